//! Which CPU takes the completion interrupts of the disk under a directory.
//!
//! On a machine whose disk has fewer interrupt vectors than CPUs (this repository's VM: one
//! virtio-blk queue, its interrupt on CPU 1), a thread pinned to another CPU is woken by an
//! inter-processor interrupt after every completion, and its io_uring workers share the pinned
//! CPU with it. Measured on that VM (`keel-bench limits --sizes 1m --probes write-fsync
//! --queue-depth 1 --blocks new-files`, under `taskset -c N`): 1292 and 1340 MB/s pinned to
//! CPU 0, 1532 and 1540 pinned to CPU 1, 1527 unpinned. The engine benchmark pins its one
//! executor to the CPU found here unless told otherwise, as an operator tunes interrupt
//! affinity and shard placement together (Redpanda's `rpk tune` sets disk interrupts).
//!
//! The path from a directory to its interrupts, all in sysfs: `stat(dir).st_dev` names the
//! block device (`/sys/dev/block/<major>:<minor>`); a partition's disk is its parent
//! directory; the disk's `device` link, and its parents up to the first that has `msi_irqs`,
//! lead to the PCI function whose MSI vectors are listed there; `/proc/interrupts` counts
//! each vector's interrupts per CPU since boot. Nothing here is an error: a disk with no MSI
//! vectors (a RAM disk, a loop device, tmpfs) has no interrupt CPU.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The completion interrupts of the disk under a directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskInterrupts {
    /// The disk's name in /sys/block (`vda`, `nvme0n1`).
    pub disk: String,
    /// Its MSI vectors.
    pub irqs: Vec<u32>,
    /// Interrupts of those vectors per CPU since boot, indexed by CPU number.
    pub per_cpu: Vec<u64>,
}

impl DiskInterrupts {
    /// The CPU that took the most of them, if any were taken.
    pub fn busiest_cpu(&self) -> Option<usize> {
        let (cpu, count) = self
            .per_cpu
            .iter()
            .enumerate()
            .max_by_key(|(cpu, count)| (**count, std::cmp::Reverse(*cpu)))?;
        (*count > 0).then_some(cpu)
    }

    /// `disk vda: completion interrupts (MSI 35, 36) 0 on CPU 0, 46750 on CPU 1 since boot`.
    pub fn describe(&self) -> String {
        let irqs: Vec<String> = self.irqs.iter().map(u32::to_string).collect();
        let counts: Vec<String> = self
            .per_cpu
            .iter()
            .enumerate()
            .map(|(cpu, n)| format!("{n} on CPU {cpu}"))
            .collect();
        format!(
            "disk {}: completion interrupts (MSI {}) {} since boot",
            self.disk,
            irqs.join(", "),
            counts.join(", ")
        )
    }
}

/// The disk interrupts of the device holding `dir`, or `None` when they cannot be found.
pub fn disk_interrupts(dir: &Path) -> Option<DiskInterrupts> {
    let dev = std::fs::metadata(dir).ok()?.dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let mut disk = std::fs::canonicalize(format!("/sys/dev/block/{major}:{minor}")).ok()?;
    if disk.join("partition").exists() {
        disk = disk.parent()?.to_path_buf();
    }
    let name = disk.file_name()?.to_string_lossy().into_owned();
    let irqs = msi_irqs(&disk.join("device"))?;
    let interrupts = std::fs::read_to_string("/proc/interrupts").ok()?;
    let per_cpu = parse_interrupts(&interrupts, &irqs)?;
    Some(DiskInterrupts {
        disk: name,
        irqs,
        per_cpu,
    })
}

/// The CPU to pin a disk benchmark's one executor to when none is given: the CPU that takes
/// the interrupts of the disk under `dir` (or its nearest existing parent), if this process
/// may run there; otherwise CPU 0.
pub fn default_pin_cpu(dir: &Path) -> usize {
    let existing = dir.ancestors().find(|d| d.exists());
    existing
        .and_then(disk_interrupts)
        .and_then(|d| d.busiest_cpu())
        .filter(|cpu| keel_engine::shard::core_ids().contains(cpu))
        .unwrap_or(0)
}

/// The MSI vectors of the first of `device` and its parents that lists any.
fn msi_irqs(device: &Path) -> Option<Vec<u32>> {
    let mut at: PathBuf = std::fs::canonicalize(device).ok()?;
    // Bounded: sysfs device paths are a few levels deep; stop at /sys/devices.
    for _ in 0..8 {
        if let Ok(entries) = std::fs::read_dir(at.join("msi_irqs")) {
            let mut irqs: Vec<u32> = entries
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect();
            irqs.sort_unstable();
            return (!irqs.is_empty()).then_some(irqs);
        }
        if !at.pop() || at.ends_with("devices") {
            return None;
        }
    }
    None
}

/// Sums the per-CPU counts of `irqs` in the text of `/proc/interrupts`: a header line of
/// `CPU<n>` columns, then one line per interrupt, `<irq>:` and a count per column.
pub fn parse_interrupts(text: &str, irqs: &[u32]) -> Option<Vec<u64>> {
    let mut lines = text.lines();
    let cpus = lines.next()?.split_whitespace().count();
    let mut per_cpu = vec![0u64; cpus];
    let mut found = false;
    for line in lines {
        let mut fields = line.split_whitespace();
        let Some(irq) = fields.next().and_then(|f| f.strip_suffix(':')) else {
            continue;
        };
        let Ok(irq) = irq.parse::<u32>() else {
            continue;
        };
        if !irqs.contains(&irq) {
            continue;
        }
        found = true;
        for (slot, field) in per_cpu.iter_mut().zip(fields) {
            *slot += field.parse::<u64>().unwrap_or(0);
        }
    }
    found.then_some(per_cpu)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "           CPU0       CPU1
 35:          0          1 PCI-MSIX-0000:00:02.0   0-edge      virtio1-config
 36:          3      46749 PCI-MSIX-0000:00:02.0   1-edge      virtio1-req.0
 38:          0       1420 PCI-MSIX-0000:00:03.0   1-edge      virtio2-input.0
NMI:          0          0   Non-maskable interrupts
";

    #[test]
    fn sums_the_disk_vectors_per_cpu() {
        let per_cpu = parse_interrupts(SAMPLE, &[35, 36]).expect("the sample lists both vectors");
        assert_eq!(per_cpu, vec![3, 46750]);
        let d = DiskInterrupts {
            disk: "vda".into(),
            irqs: vec![35, 36],
            per_cpu,
        };
        assert_eq!(d.busiest_cpu(), Some(1));
        assert_eq!(
            d.describe(),
            "disk vda: completion interrupts (MSI 35, 36) 3 on CPU 0, 46750 on CPU 1 since boot"
        );
        assert_eq!(parse_interrupts(SAMPLE, &[99]), None);
        let idle = DiskInterrupts {
            per_cpu: vec![0, 0],
            ..d
        };
        assert_eq!(idle.busiest_cpu(), None);
    }

    #[test]
    fn reads_this_machine_without_failing() {
        // Whatever the machine, the lookup answers (possibly `None`) and never panics; where
        // it finds the disk, the counts cover every CPU of the header.
        if let Some(d) = disk_interrupts(Path::new(".")) {
            assert!(!d.irqs.is_empty());
            assert!(!d.per_cpu.is_empty());
        }
        let cpu = default_pin_cpu(Path::new("no/such/dir/below/here"));
        assert!(cpu == 0 || keel_engine::shard::core_ids().contains(&cpu));
    }
}
