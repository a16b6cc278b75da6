//! Reading what the kernel side recorded: capability-check counts (the per-CPU hash plus the
//! per-CPU cache in front of it), seccomp denials, syscall bitmaps, loss counters, stacks and
//! map fill levels; and forgetting cgroups that are gone so the maps do not fill up.

use std::collections::{BTreeMap, BTreeSet};

use aya::maps::{HashMap as AyaHashMap, IterableMap as _, PerCpuArray, PerCpuHashMap};
use monitor_common::{CapCacheEntry, CapKey, DenyKey, SyscallBitmap, counter};

use super::{
    batch,
    loader::{ProbeError, Probes},
    map_reads::held,
};

/// A cgroup's syscall numbers: (the workload's, the runtime's under the filter).
pub type SyscallSets = (Vec<u32>, Vec<u32>);

/// Sums a per-CPU value.
fn sum(values: &[u64]) -> u64 {
    values.iter().copied().fold(0u64, u64::wrapping_add)
}

impl Probes {
    /// Capability check counts of the cgroups `keep` selects: `CAP_CHECKS` summed over CPUs,
    /// plus what the per-CPU `CAP_CACHE` holds that was not flushed into it yet (one pass over
    /// each map).
    pub fn cap_checks(&self, keep: impl Fn(u64) -> bool) -> Result<Vec<(CapKey, u64)>, ProbeError> {
        let mut counts = self.per_cpu_counts::<CapKey>("CAP_CHECKS", |k| keep(k.cgroup_id))?;
        let cache: PerCpuArray<_, CapCacheEntry> = self.map("CAP_CACHE")?;
        let slots = held(|| {
            (0..monitor_common::CAP_CACHE_SLOTS)
                .map(|slot| cache.get(&slot, 0))
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(|e| ProbeError::Map("CAP_CACHE", e))?;
        for entries in slots {
            for e in entries
                .iter()
                .filter(|e| e.delta > 0 && keep(e.key.cgroup_id))
            {
                *counts.entry(e.key).or_default() += e.delta;
            }
        }
        Ok(counts.into_iter().collect())
    }

    /// Seccomp denials of the cgroups `keep` selects, summed over CPUs.
    pub fn denials(&self, keep: impl Fn(u64) -> bool) -> Result<Vec<(DenyKey, u64)>, ProbeError> {
        Ok(self
            .per_cpu_counts::<DenyKey>("DENIALS", |k| keep(k.cgroup_id))?
            .into_iter()
            .collect())
    }

    /// Syscall sets of the cgroups `keep` selects: cgroup id -> (workload's syscalls, the
    /// runtime's syscalls under the filter).
    pub fn syscalls(
        &self,
        keep: impl Fn(u64) -> bool,
    ) -> Result<BTreeMap<u64, SyscallSets>, ProbeError> {
        let map: AyaHashMap<_, u64, SyscallBitmap> = self.map("SYSCALLS")?;
        let mut out: BTreeMap<u64, (Vec<u32>, Vec<u32>)> = BTreeMap::new();
        let entries: Vec<(u64, SyscallBitmap)> =
            match held(|| batch::lookup_all::<u64, SyscallBitmap>(map.map(), 1))
                .map_err(|e| ProbeError::Batch("SYSCALLS", e))?
            {
                Some((keys, values)) => keys.into_iter().zip(values).collect(),
                None => held(|| map.iter().collect::<Result<_, _>>())
                    .map_err(|e| ProbeError::Map("SYSCALLS", e))?,
            };
        for (key, bitmap) in entries {
            let runtime = key & monitor_common::RUNTIME_SYSCALLS_KEY_BIT != 0;
            let id = key & !monitor_common::RUNTIME_SYSCALLS_KEY_BIT;
            if !keep(id) {
                continue;
            }
            let entry = out.entry(id).or_default();
            let set = if runtime { &mut entry.1 } else { &mut entry.0 };
            set.extend(bitmap.iter());
        }
        Ok(out)
    }

    /// Fill levels of the hash maps: (map, entries, capacity).
    pub fn map_fill(&self) -> Result<Vec<(&'static str, u64, u64)>, ProbeError> {
        let capacity = |name: &'static str, data: &aya::maps::MapData| {
            data.info()
                .map(|i| u64::from(i.max_entries()))
                .map_err(|e| ProbeError::Map(name, e))
        };
        let mut out = Vec::new();
        let m: PerCpuHashMap<_, CapKey, u64> = self.map("CAP_CHECKS")?;
        out.push((
            "CAP_CHECKS",
            m.keys().count() as u64,
            capacity("CAP_CHECKS", m.map())?,
        ));
        let m: PerCpuHashMap<_, DenyKey, u64> = self.map("DENIALS")?;
        out.push((
            "DENIALS",
            m.keys().count() as u64,
            capacity("DENIALS", m.map())?,
        ));
        let m: AyaHashMap<_, u64, SyscallBitmap> = self.map("SYSCALLS")?;
        out.push((
            "SYSCALLS",
            m.keys().count() as u64,
            capacity("SYSCALLS", m.map())?,
        ));
        let m: AyaHashMap<_, u64, [u64; monitor_common::STACK_DEPTH]> = self.map("STACKS")?;
        out.push((
            "STACKS",
            m.keys().count() as u64,
            capacity("STACKS", m.map())?,
        ));
        let m: AyaHashMap<_, u64, u8> = self.map("EXEC_SEEN")?;
        out.push((
            "EXEC_SEEN",
            m.keys().count() as u64,
            capacity("EXEC_SEEN", m.map())?,
        ));
        Ok(out)
    }

    /// Removes what the kernel side holds for cgroups that are gone (their counts were
    /// read and kept in userspace): keeps the maps from filling up under container churn.
    pub fn forget_cgroups(&mut self, gone: &BTreeSet<u64>) -> Result<(), ProbeError> {
        self.drop_counts(gone)?;
        let mut seen: AyaHashMap<_, u64, u8> = self.map_mut("EXEC_SEEN")?;
        held(|| {
            for id in gone {
                let _ = seen.remove(id);
            }
        });
        Ok(())
    }

    /// Drops the counts and syscall sets of cgroups (that capmon does not report on), keeping
    /// their exec state: bounds the maps under the host's own activity.
    pub fn drop_counts(&mut self, gone: &BTreeSet<u64>) -> Result<(), ProbeError> {
        if gone.is_empty() {
            return Ok(());
        }
        // The per-CPU cache first: an evicted slot would bring the count back.
        let mut cache: PerCpuArray<_, CapCacheEntry> = self.map_mut("CAP_CACHE")?;
        for slot in 0..monitor_common::CAP_CACHE_SLOTS {
            let Ok(values) = held(|| cache.get(&slot, 0)) else {
                continue;
            };
            if values.iter().any(|e| gone.contains(&e.key.cgroup_id)) {
                let cleared: Vec<CapCacheEntry> = values
                    .iter()
                    .map(|e| {
                        if gone.contains(&e.key.cgroup_id) {
                            CapCacheEntry::default()
                        } else {
                            *e
                        }
                    })
                    .collect();
                if let Ok(v) = aya::maps::PerCpuValues::try_from(cleared) {
                    let _ = held(|| cache.set(slot, v, 0));
                }
            }
        }
        let mut cap: PerCpuHashMap<_, CapKey, u64> = self.map_mut("CAP_CHECKS")?;
        let keys: Vec<CapKey> = cap
            .keys()
            .filter_map(Result::ok)
            .filter(|k| gone.contains(&k.cgroup_id))
            .collect();
        held(|| {
            for k in keys {
                let _ = cap.remove(&k);
            }
        });
        let mut den: PerCpuHashMap<_, DenyKey, u64> = self.map_mut("DENIALS")?;
        let keys: Vec<DenyKey> = den
            .keys()
            .filter_map(Result::ok)
            .filter(|k| gone.contains(&k.cgroup_id))
            .collect();
        held(|| {
            for k in keys {
                let _ = den.remove(&k);
            }
        });
        let mut sys: AyaHashMap<_, u64, SyscallBitmap> = self.map_mut("SYSCALLS")?;
        held(|| {
            for id in gone {
                let _ = sys.remove(id);
                let _ = sys.remove(&(id | monitor_common::RUNTIME_SYSCALLS_KEY_BIT));
            }
        });
        Ok(())
    }

    /// The entries of a per-CPU counting hash that `keep` selects, summed over CPUs: in
    /// batches ([`super::batch`]) where the kernel can, else key by key.
    fn per_cpu_counts<K: aya::Pod + Ord>(
        &self,
        name: &'static str,
        keep: impl Fn(&K) -> bool,
    ) -> Result<BTreeMap<K, u64>, ProbeError> {
        let map: PerCpuHashMap<_, K, u64> = self.map(name)?;
        let mut counts = BTreeMap::new();
        let cpus = batch::possible_cpus().map_err(|e| ProbeError::Batch(name, e))?;
        if let Some((keys, values)) = held(|| batch::lookup_all::<K, u64>(map.map(), cpus))
            .map_err(|e| ProbeError::Batch(name, e))?
        {
            for (key, per_cpu) in keys.into_iter().zip(values.chunks(cpus)) {
                if keep(&key) {
                    *counts.entry(key).or_default() += sum(per_cpu);
                }
            }
            return Ok(counts);
        }
        let items = held(|| map.iter().collect::<Result<Vec<_>, _>>())
            .map_err(|e| ProbeError::Map(name, e))?;
        for (key, values) in items {
            if keep(&key) {
                *counts.entry(key).or_default() += sum(&values);
            }
        }
        Ok(counts)
    }

    /// Marks cgroups as past their runtime setup (cgroups that were running before the probes
    /// were attached, whose first `execve` was never seen).
    pub fn mark_exec_seen(
        &mut self,
        cgroup_ids: impl IntoIterator<Item = u64>,
    ) -> Result<(), ProbeError> {
        let mut map: AyaHashMap<_, u64, u8> = self.map_mut("EXEC_SEEN")?;
        for id in cgroup_ids {
            held(|| map.insert(id, 1, 0)).map_err(|e| ProbeError::Map("EXEC_SEEN", e))?;
        }
        Ok(())
    }

    /// Kernel instruction pointers of a stack, innermost first.
    pub fn stack(&self, stack: u64) -> Vec<u64> {
        if stack == monitor_common::NO_STACK {
            return Vec::new();
        }
        let Ok(map) = self.map::<AyaHashMap<_, u64, [u64; monitor_common::STACK_DEPTH]>>("STACKS")
        else {
            return Vec::new();
        };
        held(|| map.get(&stack, 0))
            .map(|frames| frames.iter().copied().take_while(|ip| *ip != 0).collect())
            .unwrap_or_default()
    }

    /// The loss counters, by name.
    pub fn counters(&self) -> Result<BTreeMap<&'static str, u64>, ProbeError> {
        let map: PerCpuArray<_, u64> = self.map("COUNTERS")?;
        let mut out = BTreeMap::new();
        let values = held(|| {
            counter::NAMES
                .iter()
                .map(|(index, _)| map.get(index, 0))
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(|e| ProbeError::Map("COUNTERS", e))?;
        for ((_, name), values) in counter::NAMES.iter().zip(values) {
            out.insert(*name, sum(&values));
        }
        out.insert(counter::PROGRAM_SKIPPED, self.skipped_runs());
        Ok(out)
    }

    /// Runs of the attached programs that the kernel skipped (`recursion_misses`, summed; a
    /// program whose count cannot be read counts 0, said once in the log).
    pub fn skipped_runs(&self) -> u64 {
        self.attached_programs()
            .filter_map(|(name, fd)| {
                super::prog_info::recursion_misses(fd)
                    .inspect_err(|e| {
                        static SAID: std::sync::Once = std::sync::Once::new();
                        SAID.call_once(|| {
                            tracing::warn!("cannot read {name}'s skipped runs: {e}");
                        });
                    })
                    .ok()
            })
            .fold(0u64, u64::wrapping_add)
    }

    /// Low-mmap `CAP_SYS_RAWIO` checks since the programs were loaded: (counted by the
    /// `cap_mmap_addr` hook because `cap_capable` is inlined into it, seen by the
    /// `cap_capable` hook). Both 0 in tracepoint mode, which needs no `cap_mmap_addr` hook.
    pub fn mmap_addr_checks(&self) -> Result<(u64, u64), ProbeError> {
        let map: PerCpuArray<_, u64> = self.map("MMAP_ADDR")?;
        let get = |i: u32| {
            held(|| map.get(&i, 0))
                .map(|v| sum(&v))
                .map_err(|e| ProbeError::Map("MMAP_ADDR", e))
        };
        Ok((get(0)?, get(1)?))
    }
}
