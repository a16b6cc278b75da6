//! The chmod family, whose granted `CAP_FSETID` checks may not matter: `setattr_prepare` (and
//! `setattr_copy`, `posix_acl_update_mode`) ask `in_group_or_capable` only to decide whether a
//! set-group-ID bit in the new mode survives on a file whose group the caller is not in. When
//! the requested mode has no `S_ISGID` bit, the call does exactly the same without the
//! capability, and the check shows no need.
//!
//! The mode is the second argument of `chmod`/`fchmod` and the third of
//! `fchmodat`/`fchmodat2`. The loader hands the kernel side the numbers of each group packed
//! into one `u64` (`CHMOD_ARG1_NRS`, `CHMOD_ARG2_NRS`) and the offsets of those arguments in
//! the task's user `pt_regs`.

/// The chmod family by name, with the index of the mode argument (0-based).
pub const CHMOD_SYSCALLS: [(&str, u8); 4] = [
    ("chmod", 1),
    ("fchmod", 1),
    ("fchmodat", 2),
    ("fchmodat2", 2),
];

/// `S_ISGID` (`include/uapi/linux/stat.h`).
pub const S_ISGID: u64 = 0o2000;

/// Packs up to four syscall numbers below 65535 into one `u64`, 16 bits each, as number + 1
/// (0 is an empty slot). Further numbers, and numbers that do not fit, are left out.
pub fn pack_syscalls(numbers: &[u32]) -> u64 {
    numbers
        .iter()
        .filter(|n| **n < 0xffff)
        .take(4)
        .enumerate()
        .fold(0, |packed, (i, n)| packed | (u64::from(*n) + 1) << (16 * i))
}

/// Whether syscall `nr` is one of the numbers packed by [`pack_syscalls`]. Negative numbers
/// (no syscall) never are.
#[inline(always)]
pub fn in_packed(nr: i32, packed: u64) -> bool {
    if !(0..0xffff).contains(&nr) {
        return false;
    }
    let want = nr as u64 + 1;
    (packed & 0xffff) == want
        || (packed >> 16 & 0xffff) == want
        || (packed >> 32 & 0xffff) == want
        || (packed >> 48) == want
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_numbers_are_found_and_nothing_else() {
        // x86_64: chmod 90, fchmod 91; fchmodat 268, fchmodat2 452.
        let arg1 = pack_syscalls(&[90, 91]);
        let arg2 = pack_syscalls(&[268, 452]);
        for nr in -1..1000 {
            assert_eq!(in_packed(nr, arg1), nr == 90 || nr == 91, "{nr}");
            assert_eq!(in_packed(nr, arg2), nr == 268 || nr == 452, "{nr}");
        }
        // aarch64 has no chmod: fchmod 52 alone.
        let arg1 = pack_syscalls(&[52]);
        assert!(in_packed(52, arg1));
        assert!(!in_packed(0, arg1), "syscall 0 is not in an empty slot");
        assert!(!in_packed(-1, arg1));
    }

    #[test]
    fn edges() {
        assert_eq!(pack_syscalls(&[]), 0);
        assert!(!in_packed(0, 0));
        assert!(!in_packed(i32::MAX, u64::MAX));
        // Four fit, a fifth is left out, as is a number too large for 16 bits.
        let p = pack_syscalls(&[1, 2, 3, 4, 5]);
        assert!((1..=4).all(|n| in_packed(n, p)));
        assert!(!in_packed(5, p));
        assert_eq!(pack_syscalls(&[70000]), 0);
        assert!(in_packed(0xfffe, pack_syscalls(&[0xfffe])));
    }
}
