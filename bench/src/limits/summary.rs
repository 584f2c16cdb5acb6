//! The result of a limits run and the files it becomes: a JSON summary, a Markdown page, the
//! raw HDR histograms (V2) and percentile-spectrum plots, all named after the JSON file:
//!
//! ```text
//!   limits.json                  LimitsReport (serde)
//!   limits.md                    tables for people
//!   limits.fdatasync_4k.hdr      raw fdatasync histogram, microseconds
//!   limits.loopback_rtt_64b.hdr  raw round-trip histogram, nanoseconds
//!   limits.fdatasync.png         percentile spectra
//!   limits.loopback_rtt.png
//! ```

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::{DiskWriteResult, LoopbackThroughput, MachineInfo};
use crate::histogram::{save_v2, LatencySummary};
use crate::plot::{plot_percentile_spectrum, SpectrumSeries};
use crate::report::{percentile_table_markdown, write_json};
use crate::units::{format_bytes_human, format_bytes_short, size_tag};

/// One latency distribution of a limits run, summarised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencyProbe {
    pub name: String,
    /// The block written before each fdatasync, or the round-trip message size.
    pub payload_bytes: usize,
    /// The unit of the raw histogram file: "us" or "ns".
    pub histogram_unit: String,
    pub latency: LatencySummary,
}

impl LatencyProbe {
    pub fn new(
        name: &str,
        payload_bytes: usize,
        histogram_unit: &str,
        histogram: &Histogram<u64>,
        unit_us: f64,
    ) -> Self {
        Self {
            name: name.to_owned(),
            payload_bytes,
            histogram_unit: histogram_unit.to_owned(),
            latency: LatencySummary::from_histogram(histogram, unit_us),
        }
    }
}

/// Everything a limits run measured, as written to JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LimitsReport {
    pub keel_bench_version: String,
    pub started_at_unix_s: u64,
    /// How long each single probe ran.
    pub probe_seconds: f64,
    pub machine: MachineInfo,
    /// The best sequential write throughput without fdatasync: the figure a throughput
    /// benchmark divides by.
    pub seq_write_mb_per_s_max: Option<f64>,
    pub disk_write: Vec<DiskWriteResult>,
    pub fsync_latency: Option<LatencyProbe>,
    pub loopback_throughput: Option<LoopbackThroughput>,
    pub loopback_rtt: Option<LatencyProbe>,
    /// Raw histogram files written next to the JSON, by file name.
    pub histogram_files: Vec<String>,
}

/// The best MB/s among the writes without fdatasync.
pub fn seq_write_mb_per_s_max(results: &[DiskWriteResult]) -> Option<f64> {
    results
        .iter()
        .filter(|result| !result.fsync_each)
        .map(|result| result.mb_per_s)
        .reduce(f64::max)
}

/// A limits run: the report plus the raw histograms behind its latency summaries.
#[derive(Debug)]
pub struct LimitsRun {
    pub report: LimitsReport,
    /// fdatasync latencies, microseconds.
    pub fsync_histogram_us: Option<Histogram<u64>>,
    /// Loopback round trips, nanoseconds.
    pub rtt_histogram_ns: Option<Histogram<u64>>,
}

impl LimitsRun {
    /// Writes the JSON at `json_path` and, next to it, the HDR files, the Markdown page and the
    /// plots. Returns every path written, JSON last.
    pub fn write_files(&mut self, json_path: &Path) -> anyhow::Result<Vec<PathBuf>> {
        let dir = match json_path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let stem = json_path
            .file_stem()
            .map_or_else(|| "limits".to_owned(), |s| s.to_string_lossy().into_owned());
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut written = Vec::new();
        let mut plots = Vec::new();
        self.report.histogram_files.clear();
        let latencies = [
            (
                &self.fsync_histogram_us,
                &self.report.fsync_latency,
                "fdatasync",
                1.0,
            ),
            (
                &self.rtt_histogram_ns,
                &self.report.loopback_rtt,
                "loopback_rtt",
                0.001,
            ),
        ];
        for (histogram, probe, kind, unit_us) in latencies {
            let (Some(histogram), Some(probe)) = (histogram, probe) else {
                continue;
            };
            let hdr_name = format!("{stem}.{kind}_{}.hdr", size_tag(probe.payload_bytes));
            let hdr_path = dir.join(&hdr_name);
            save_v2(histogram, &hdr_path)?;
            self.report.histogram_files.push(hdr_name);
            written.push(hdr_path);
            let png_name = format!("{stem}.{kind}.png");
            let png_path = dir.join(&png_name);
            let series = [SpectrumSeries {
                label: format!(
                    "{} ({})",
                    probe.name,
                    format_bytes_human(probe.payload_bytes)
                ),
                histogram,
                unit_us,
            }];
            let title = format!("{} latency, percentile spectrum", probe.name);
            plot_percentile_spectrum(&png_path, &title, &series)?;
            plots.push((probe.name.clone(), png_name));
            written.push(png_path);
        }
        let md_path = dir.join(format!("{stem}.md"));
        std::fs::write(&md_path, self.report.to_markdown(&plots))
            .with_context(|| format!("writing {}", md_path.display()))?;
        written.push(md_path);
        write_json(json_path, &self.report)?;
        written.push(json_path.to_path_buf());
        Ok(written)
    }
}

impl LimitsReport {
    /// A Markdown page with every figure; `plots` are (title, file name) pairs to embed.
    pub fn to_markdown(&self, plots: &[(String, String)]) -> String {
        let mut page = String::from("# Machine limits\n\n");
        page.push_str(&self.machine_markdown());
        let _ = writeln!(page, "Each probe ran {:.1} s.\n", self.probe_seconds);
        if !self.disk_write.is_empty() {
            page.push_str("## Sequential write (io_uring, O_DIRECT, preallocated file)\n\n");
            page.push_str(
                "| block | QD | fdatasync each | blocks | data | MB/s | MiB/s | IOPS |\n",
            );
            page.push_str("|---:|---:|:---:|---|---|---:|---:|---:|\n");
            for r in &self.disk_write {
                let _ = writeln!(
                    page,
                    "| {} | {} | {} | {} | {} | {:.0} | {:.0} | {:.0} |",
                    format_bytes_short(r.block_bytes),
                    r.queue_depth,
                    if r.fsync_each { "yes" } else { "no" },
                    super::Blocks::of(r).label(),
                    super::Data::of(r).label(),
                    r.mb_per_s,
                    r.mib_per_s,
                    r.iops
                );
            }
            if let Some(best) = self.seq_write_mb_per_s_max {
                let _ = writeln!(page, "\nBest sequential write: **{best:.0} MB/s**.");
            }
            page.push('\n');
        }
        let latencies: Vec<(String, &LatencySummary)> = [&self.fsync_latency, &self.loopback_rtt]
            .into_iter()
            .flatten()
            .map(|probe| {
                let size = format_bytes_human(probe.payload_bytes);
                (format!("{} ({size})", probe.name), &probe.latency)
            })
            .collect();
        if !latencies.is_empty() {
            page.push_str("## Latency (µs)\n\n");
            let rows: Vec<(&str, &LatencySummary)> = latencies
                .iter()
                .map(|(name, s)| (name.as_str(), *s))
                .collect();
            page.push_str(&percentile_table_markdown(&rows));
            page.push_str(
                "\nfdatasync: an O_DIRECT block write, then fdatasync, timed alone. \
                 Round trip: a message over 127.0.0.1 TCP and its echo.\n\n",
            );
        }
        if let Some(t) = &self.loopback_throughput {
            let _ = writeln!(
                page,
                "## Loopback TCP\n\n{:.1} Gbit/s ({:.0} MB/s), one sender thread writing {} \
                 chunks to one receiver thread reading {} at a time, over 127.0.0.1.\n",
                t.gbit_per_s,
                t.mb_per_s,
                format_bytes_human(t.chunk_bytes),
                format_bytes_human(t.read_bytes)
            );
        }
        for (title, file) in plots {
            let _ = writeln!(page, "![{title} percentile spectrum]({file})\n");
        }
        page
    }

    fn machine_markdown(&self) -> String {
        let m = &self.machine;
        let memory_gib = m.memory_total_bytes.map_or_else(
            || "?".to_owned(),
            |b| format!("{:.1}", b as f64 / f64::from(1 << 30)),
        );
        let storage = &m.storage;
        let (device, mount_fs) = storage.mount.as_ref().map_or(("?", "?"), |mount| {
            (mount.device.as_str(), mount.fs_type.as_str())
        });
        format!(
            "Machine `{}`: {} ({} CPUs, {} available), {memory_gib} GiB, {} kernel {}. \
             Probe directory `{}` on `{device}` ({mount_fs}).\n\n",
            m.hostname,
            m.cpu_model.as_deref().unwrap_or("unknown CPU"),
            m.cpu_logical_count,
            m.cpu_available_count,
            m.os.as_deref().unwrap_or("Linux"),
            m.kernel_release,
            storage.dir.display(),
        )
    }
}
