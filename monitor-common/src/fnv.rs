//! FNV-1a, 64-bit: the one hash of the project's cheap fingerprints. The kernel side hashes a
//! call stack's frames (the key of `STACKS`) and a credential's eight ids with it; userspace
//! uses it for snapshot fingerprints and test names. Each step folds in one `u64` (a stack
//! frame, an id, a byte): over bytes widened to `u64` it is the standard byte-wise FNV-1a.

/// The FNV-1a 64-bit offset basis: the hash of nothing.
pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
/// The FNV 64-bit prime.
pub const FNV_PRIME: u64 = 0x100_0000_01b3;

/// One FNV-1a step: folds `v` into the running hash `h` (start from [`FNV_OFFSET`]).
#[inline(always)]
pub const fn fnv1a_step(h: u64, v: u64) -> u64 {
    (h ^ v).wrapping_mul(FNV_PRIME)
}

/// FNV-1a of a sequence of values, each folded in by [`fnv1a_step`].
#[inline(always)]
pub fn fnv1a(values: impl IntoIterator<Item = u64>) -> u64 {
    values.into_iter().fold(FNV_OFFSET, fnv1a_step)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(b: &[u8]) -> u64 {
        fnv1a(b.iter().map(|b| u64::from(*b)))
    }

    #[test]
    fn matches_the_published_fnv1a_64_vectors() {
        assert_eq!(bytes(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(bytes(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(bytes(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn steps_and_whole_agree() {
        let frames = [0xffff_ffff_8100_0000_u64, 0xffff_ffff_8200_1234, 0];
        let mut h = FNV_OFFSET;
        for f in frames {
            h = fnv1a_step(h, f);
        }
        assert_eq!(h, fnv1a(frames));
        // A word is folded in whole, not byte by byte.
        assert_ne!(fnv1a([0x100]), fnv1a([0x1, 0x0]));
    }
}
