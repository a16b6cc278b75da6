//! The cgroup2 mount point in a `/proc/self/mountinfo` text: pure cgroup2 at
//! `/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on hybrid hosts. Never hard-coded: hosts
//! differ.

use std::path::PathBuf;

/// Undoes the octal escapes (`\040` for a space) that mountinfo uses in paths. A backslash
/// that does not start an escape of one byte (`\000` to `\377`) stays as it is.
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && let Some(v) = octal_byte(&bytes[i + 1..])
        {
            out.push(v);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The byte written as the three octal digits `digits` starts with, if they are that.
fn octal_byte(digits: &[u8]) -> Option<u8> {
    let value = digits.get(..3)?.iter().try_fold(0u32, |v, d| {
        (b'0'..=b'7')
            .contains(d)
            .then(|| v * 8 + u32::from(d - b'0'))
    })?;
    u8::try_from(value).ok()
}

/// The mount point of the cgroup2 file system in a mountinfo text: the first `cgroup2` mount
/// of the hierarchy's root (`/`), else the first `cgroup2` mount at all.
pub fn parse_cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    let mut fallback = None;
    for line in mountinfo.lines() {
        // id parent major:minor root mount-point options [optional...] - fstype source super
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        if right.split_whitespace().next() != Some("cgroup2") {
            continue;
        }
        let fields: Vec<&str> = left.split_whitespace().collect();
        let (Some(root), Some(mount_point)) = (fields.get(3), fields.get(4)) else {
            continue;
        };
        let mount_point = PathBuf::from(unescape_mountinfo(mount_point));
        if *root == "/" {
            return Some(mount_point);
        }
        fallback.get_or_insert(mount_point);
    }
    fallback
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Read from this project's build machine (hybrid: v1 controllers + cgroup2 "unified").
    const HYBRID: &str = "\
24 30 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
26 24 0:24 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
27 26 0:25 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
28 26 0:26 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
31 26 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,cpu,cpuacct
";

    /// A pure cgroup2 host (systemd 252 default).
    const UNIFIED: &str = "\
22 28 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:2 - sysfs sysfs rw
25 22 0:24 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    /// Inside a container: the cgroup namespace root is a sub-directory, mounted read-only.
    const IN_CONTAINER: &str = "\
612 603 0:26 /../../.. /run/x rw - cgroup2 cgroup2 rw
613 604 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec,relatime - cgroup2 cgroup rw
";

    #[test]
    fn finds_cgroup2_in_hybrid_mode() {
        assert_eq!(
            parse_cgroup2_mount(HYBRID),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
    }

    #[test]
    fn finds_cgroup2_on_unified_hosts() {
        assert_eq!(
            parse_cgroup2_mount(UNIFIED),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
    }

    #[test]
    fn prefers_the_mount_of_the_root() {
        assert_eq!(
            parse_cgroup2_mount(IN_CONTAINER),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
    }

    #[test]
    fn no_cgroup2_is_none() {
        let v1_only = "31 26 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n";
        assert_eq!(parse_cgroup2_mount(v1_only), None);
        assert_eq!(parse_cgroup2_mount(""), None);
        assert_eq!(parse_cgroup2_mount("garbage without separator\n"), None);
    }

    #[test]
    fn escaped_mount_points() {
        let text = "40 26 0:30 / /mnt/cg\\040two rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            parse_cgroup2_mount(text),
            Some(PathBuf::from("/mnt/cg two"))
        );
    }

    #[test]
    fn escapes_beyond_a_byte_stay_as_they_are() {
        // Found by fuzzing: `\777` overflowed the byte it was decoded into.
        let text = "40 26 0:30 / /mnt/a\\777b\\101\\12 rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            parse_cgroup2_mount(text),
            Some(PathBuf::from("/mnt/a\\777bA\\12"))
        );
    }
}
