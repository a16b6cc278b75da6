//! Giving memory back. The daemon's peaks are short: discovering a node's containers at start,
//! a burst of new ones, a `/metrics` text of several MiB. glibc's allocator keeps what such a
//! peak freed (its threshold for giving large blocks their own mapping rises to the largest
//! block freed, and freed heap pages stay mapped), so the resident size stayed at the peak:
//! measured with 1,000 pod-shaped containers, 83 MiB held after a start-up peak, 130 MiB after
//! a few scrapes. Two settings bound it: a fixed mapping threshold (blocks of 128 KiB and more
//! are mapped on their own and unmapped when freed) and a trim of every arena every 10 s.

use std::time::Duration;

/// How often the heap is trimmed.
pub const TRIM_EVERY: Duration = Duration::from_secs(10);

/// Blocks this large or larger get their own mapping (glibc's initial threshold, kept fixed).
#[cfg(target_env = "gnu")]
const MMAP_THRESHOLD: libc::c_int = 128 * 1024;

/// Sets the allocator up for a long-running daemon; called once at start.
pub fn tune() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes the allocator's parameters; called before other threads
    // allocate much, and glibc serializes it anyway.
    if unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) } != 1 {
        tracing::debug!("mallopt(M_MMAP_THRESHOLD) refused: large blocks follow glibc's default");
    }
}

/// Returns the free pages of every arena to the kernel.
pub fn trim() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim walks the allocator's own arenas under their locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freed_peaks_leave_the_resident_set() {
        tune();
        let rss = || {
            std::fs::read_to_string("/proc/self/status")
                .expect("status")
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .expect("VmRSS")
        };
        let before = rss();
        // A peak of many small blocks (as a snapshot of many containers is), then freed but
        // for one in 50, which keeps the heap's top in use (nothing is given back unasked).
        let mut peak: Vec<Vec<u8>> = (0..100_000).map(|i| vec![i as u8; 500]).collect();
        let during = rss();
        let kept: Vec<Vec<u8>> = peak.iter_mut().step_by(50).map(std::mem::take).collect();
        drop(peak);
        let freed = rss();
        trim();
        let after = rss();
        eprintln!("KiB: {before} before, {during} at the peak, {freed} freed, {after} trimmed");
        assert_eq!(kept.len(), 2_000);
        assert!(
            during > before + 40_000,
            "the peak was not resident: {before} -> {during} KiB"
        );
        // The pages the kept blocks sit on stay (one in six here).
        assert!(
            after.saturating_sub(before) < (during - before) / 3,
            "{} KiB of a {} KiB peak stayed resident after the trim",
            after.saturating_sub(before),
            during - before
        );
    }
}
