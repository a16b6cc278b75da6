//! The `set*id` syscalls, whose granted `CAP_SETUID`/`CAP_SETGID` checks wait for the call's
//! outcome (a call that leaves every id as it was did not need the capability). Their numbers
//! differ per architecture but lie within 64 of each other, so the loader hands the kernel side
//! a base and a bit mask (the `SETID_BASE`/`SETID_MASK` globals) and the test is two
//! instructions' worth of arithmetic.

/// The `set*id` syscalls by name.
pub const SETID_SYSCALLS: [&str; 8] = [
    "setuid",
    "setgid",
    "setreuid",
    "setregid",
    "setresuid",
    "setresgid",
    "setfsuid",
    "setfsgid",
];

/// `(base, mask)` of a set of syscall numbers (those of [`SETID_SYSCALLS`] on one
/// architecture): `base` is the lowest number, bit `b` of `mask` is set for number `base + b`.
/// Numbers 64 or more above the lowest are left out; `(0, 0)` for no numbers.
pub fn setid_base_mask(numbers: &[u64]) -> (u64, u64) {
    let Some(base) = numbers.iter().copied().min() else {
        return (0, 0);
    };
    let mask = numbers
        .iter()
        .filter(|n| **n - base < 64)
        .fold(0u64, |m, n| m | 1 << (n - base));
    (base, mask)
}

/// Whether syscall `nr` is one of the set described by `(base, mask)` (see
/// [`setid_base_mask`]). Negative numbers (no syscall) never are.
#[inline(always)]
pub fn is_setid_syscall(nr: i32, base: u64, mask: u64) -> bool {
    let bit = (nr as i64) - base as i64;
    nr >= 0 && (0..64).contains(&bit) && mask & (1u64 << bit) != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// x86_64: setuid 105, setgid 106, setreuid 113, setregid 114, setresuid 117, setresgid
    /// 119, setfsuid 122, setfsgid 123 (arch/x86/entry/syscalls/syscall_64.tbl).
    const X86_64: [u64; 8] = [105, 106, 113, 114, 117, 119, 122, 123];
    /// aarch64 (asm-generic): setregid 143, setgid 144, setreuid 145, setuid 146, setresuid
    /// 147, setresgid 149, setfsuid 151, setfsgid 152.
    const AARCH64: [u64; 8] = [146, 144, 145, 143, 147, 149, 151, 152];

    fn members(base: u64, mask: u64) -> impl Iterator<Item = u64> {
        (0..64)
            .filter(move |b| mask & (1 << b) != 0)
            .map(move |b| base + b)
    }

    #[test]
    fn x86_64_numbers() {
        let (base, mask) = setid_base_mask(&X86_64);
        assert_eq!(base, 105);
        assert_eq!(mask.count_ones(), 8);
        assert!(members(base, mask).eq(X86_64));
        for nr in 0..600 {
            let expected = X86_64.contains(&(nr as u64));
            assert_eq!(is_setid_syscall(nr, base, mask), expected, "{nr}");
        }
        // setresgid is 119 and setresuid 117: 118 (getresuid) is not one of them.
        assert!(!is_setid_syscall(118, base, mask));
    }

    #[test]
    fn aarch64_numbers() {
        let (base, mask) = setid_base_mask(&AARCH64);
        assert_eq!(base, 143);
        assert_eq!(mask.count_ones(), 8);
        assert!(members(base, mask).eq([143, 144, 145, 146, 147, 149, 151, 152]));
        assert!(is_setid_syscall(146, base, mask));
        assert!(!is_setid_syscall(148, base, mask));
        assert!(!is_setid_syscall(150, base, mask));
        assert!(!is_setid_syscall(142, base, mask));
    }

    #[test]
    fn edges() {
        assert_eq!(setid_base_mask(&[]), (0, 0));
        // Nothing is a member of the empty set, not even syscall 0.
        assert!(!is_setid_syscall(0, 0, 0));
        assert!(!is_setid_syscall(-1, 0, u64::MAX));
        // A number 64 or more above the lowest does not fit the mask and is left out.
        let (base, mask) = setid_base_mask(&[10, 73, 74]);
        assert_eq!((base, mask), (10, 1 | 1 << 63));
        assert!(is_setid_syscall(73, base, mask));
        assert!(!is_setid_syscall(74, base, mask));
        assert!(!is_setid_syscall(i32::MAX, base, mask));
    }
}
