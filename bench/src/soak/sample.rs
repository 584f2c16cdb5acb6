//! Sampling the broker from outside: its /proc entries (RSS, open files, threads, CPU) and
//! its data directory (segment files of the soak topic, and which of them retention deleted).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::csv::Sample;
use crate::kafka::run::process_cpu_s;
use crate::report::load_average;

/// Samples one broker process and its data directory.
#[derive(Debug)]
pub struct Sampler {
    pid: u32,
    data_dir: PathBuf,
    /// Partition directories of the soak topic are named `<topic>-<partition>`.
    topic_dir_prefix: String,
    /// Prefix of the admin load's short-lived topics.
    admin_prefix: String,
    /// Every segment file of the soak topic seen so far, as (partition dir, file name). A
    /// segment lives for many samples (retention keeps several per partition), so none is
    /// missed between two samples.
    seen: HashSet<(String, String)>,
}

impl Sampler {
    pub fn new(pid: u32, data_dir: &Path, topic: &str, admin_prefix: &str) -> Self {
        Self {
            pid,
            data_dir: data_dir.to_path_buf(),
            topic_dir_prefix: format!("{topic}-"),
            admin_prefix: admin_prefix.to_owned(),
            seen: HashSet::new(),
        }
    }

    /// One sample at `t_s` seconds. A figure that cannot be read (the broker gone) is 0, so
    /// the sample still records the rest.
    pub fn sample(&mut self, t_s: f64) -> Sample {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok();
        let status_kib = |key: &str| -> f64 {
            status
                .as_deref()
                .and_then(|s| status_field(s, key))
                .unwrap_or(0.0)
        };
        let open_files = std::fs::read_dir(format!("/proc/{}/fd", self.pid))
            .map_or(0, |entries| entries.count());
        let disk = self.scan_data_dir();
        Sample {
            t_s,
            rss_bytes: status_kib("VmRSS:") * 1024.0,
            open_files: open_files as f64,
            threads: status_kib("Threads:"),
            load1: load_average().map_or(0.0, |l| l[0]),
            segment_files: disk.segment_files as f64,
            segments_deleted: (self.seen.len() - disk.segment_files) as f64,
            log_bytes: disk.log_bytes as f64,
            data_files: disk.data_files as f64,
            admin_topic_dirs: disk.admin_topic_dirs as f64,
            broker_cpu_s: process_cpu_s(self.pid).unwrap_or(0.0),
        }
    }

    /// Walks the data directory two levels deep: `<data-dir>/<dir>/<file>`.
    fn scan_data_dir(&mut self) -> DiskScan {
        let mut scan = DiskScan::default();
        let Ok(entries) = std::fs::read_dir(&self.data_dir) else {
            return scan;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(files) = std::fs::read_dir(entry.path()) else {
                scan.data_files += 1;
                continue;
            };
            if name.starts_with(&self.admin_prefix) {
                scan.admin_topic_dirs += 1;
            }
            let soak_partition = name.starts_with(&self.topic_dir_prefix);
            for file in files.flatten() {
                scan.data_files += 1;
                let file_name = file.file_name().to_string_lossy().into_owned();
                if soak_partition && file_name.ends_with(".log") {
                    scan.segment_files += 1;
                    scan.log_bytes += file.metadata().map_or(0, |m| m.len());
                    self.seen.insert((name.clone(), file_name));
                }
            }
        }
        scan
    }
}

#[derive(Debug, Default)]
struct DiskScan {
    segment_files: usize,
    log_bytes: u64,
    data_files: usize,
    admin_topic_dirs: usize,
}

/// The number after `key` in /proc/<pid>/status (`VmRSS:   31200 kB` gives 31200).
fn status_field(status: &str, key: &str) -> Option<f64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|value| value.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_status_fields() {
        let status = "Name:\tkeel\nVmRSS:\t   31200 kB\nThreads:\t7\n";
        assert_eq!(status_field(status, "VmRSS:"), Some(31200.0));
        assert_eq!(status_field(status, "Threads:"), Some(7.0));
        assert_eq!(status_field(status, "VmHWM:"), None);
    }

    #[test]
    fn samples_itself_and_counts_deleted_segments() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let partition = dir.path().join("bench-soak-0-0");
        std::fs::create_dir(&partition)?;
        for base in [0, 100] {
            std::fs::write(partition.join(format!("{base:020}.log")), b"x")?;
        }
        std::fs::create_dir(dir.path().join("soak-admin-3-0"))?;
        let mut sampler = Sampler::new(
            std::process::id(),
            dir.path(),
            "bench-soak-0",
            "soak-admin-",
        );
        let first = sampler.sample(1.0);
        assert!(first.rss_bytes > 0.0 && first.open_files > 0.0 && first.threads >= 1.0);
        assert_eq!((first.segment_files, first.segments_deleted), (2.0, 0.0));
        assert_eq!(first.admin_topic_dirs, 1.0);
        std::fs::remove_file(partition.join(format!("{:020}.log", 0)))?;
        std::fs::write(partition.join(format!("{:020}.log", 200)), b"y")?;
        let second = sampler.sample(2.0);
        assert_eq!((second.segment_files, second.segments_deleted), (2.0, 1.0));
        assert_eq!(second.log_bytes, 2.0);
        Ok(())
    }
}
