//! The run folder of `keel-bench sweep`, and its regeneration by `keel-bench report DIR`:
//!
//! ```text
//!   results/<date>_<gitsha>_<host>/
//!     command.txt                       the exact argv
//!     machine.json                      CPU, memory, kernel, file system and device
//!     summary.json                      every figure of every run (SweepSummary)
//!     <system>_<run>_<role>.hdr         raw latencies, µs (HDR V2); run = max, r25..r90,
//!                                       same; role = produce, produce_uncorrected, e2e, ...
//!     limits_fdatasync_4k.hdr           the raw fdatasync latencies of the same run, µs
//!     report.md                         tables, checks, plots, notes.md
//!     spectrum_same_rate.png            produce latency of every system at one rate
//!     spectrum_<system>.png             one system's produce latency at every fraction
//!     latency_vs_throughput.png         p99 and p99.9 against throughput, every system
//!     throughput_over_time.png          the max-rate runs, second by second
//!     notes.md                          optional, hand-written analysis
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use hdrhistogram::Histogram;

use super::markdown::report_markdown;
use super::run::RunSummary;
use super::summary::{SweepSummary, KIND};
use super::sweep::SweepRun;
use crate::plot::{plot_percentile_spectrum, plot_xy, SpectrumSeries, XySeries};
use crate::report::{by_file, load_histograms, read_summary, write_run_folder};

/// Writes the whole run folder into `dir`; returns the paths written.
pub fn write_sweep(dir: &Path, run: &SweepRun) -> anyhow::Result<Vec<PathBuf>> {
    let s = &run.summary;
    write_run_folder(
        dir,
        &s.identity.command,
        &s.identity.machine,
        &run.histograms,
        s,
        |h| render(dir, s, h),
    )
}

/// Whether `dir/summary.json` is a sweep's (rather than the engine report's).
pub fn is_sweep_dir(dir: &Path) -> bool {
    crate::report::summary_kind_is(dir, KIND)
}

/// `keel-bench report DIR` for a sweep: reads `summary.json` and the histograms it names, and
/// writes `report.md` and the plots again.
pub fn regenerate(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let summary: SweepSummary = read_summary(dir)?;
    let mut files: Vec<String> = summary.fsync_histogram_file.iter().cloned().collect();
    for system in &summary.systems {
        for run in all_runs(system) {
            files.extend(run.histogram_files.iter().map(|(_, file)| file.clone()));
        }
    }
    let loaded = load_histograms(dir, files.iter().map(String::as_str))?;
    render(dir, &summary, &by_file(&loaded))
}

fn all_runs(system: &super::summary::SystemResult) -> impl Iterator<Item = &RunSummary> {
    std::iter::once(&system.max)
        .chain(system.fixed.iter())
        .chain(system.same_rate.iter())
}

/// The histogram of `run` with `role`, if it was recorded.
fn histogram_of<'a>(
    run: &RunSummary,
    role: &str,
    histograms: &HashMap<&str, &'a Histogram<u64>>,
) -> Option<&'a Histogram<u64>> {
    let file = run.histogram_files.iter().find(|(r, _)| r == role)?;
    histograms.get(file.1.as_str()).copied()
}

/// Draws the plots and writes report.md.
fn render(
    dir: &Path,
    summary: &SweepSummary,
    histograms: &HashMap<&str, &Histogram<u64>>,
) -> anyhow::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let mut plots: Vec<(String, String)> = Vec::new();
    let fsync = summary
        .fsync_histogram_file
        .as_deref()
        .and_then(|f| histograms.get(f).copied());
    let raw_series = || {
        fsync.map(|histogram| SpectrumSeries {
            label: "raw fdatasync, 4 KiB (same run)".to_owned(),
            histogram,
            unit_us: 1.0,
        })
    };
    if let Some(rate) = summary.same_rate {
        let mut series: Vec<SpectrumSeries<'_>> = Vec::new();
        for system in &summary.systems {
            let Some(run) = &system.same_rate else {
                continue;
            };
            for (role, what) in [("produce", "produce"), ("e2e", "end-to-end")] {
                if let Some(histogram) = histogram_of(run, role, histograms) {
                    series.push(SpectrumSeries {
                        label: format!("{} {what}", system.system.name),
                        histogram,
                        unit_us: 1.0,
                    });
                }
            }
        }
        series.extend(raw_series());
        let file = "spectrum_same_rate.png";
        plot_percentile_spectrum(
            &dir.join(file),
            &format!("latency at {rate} msg/s, every system"),
            &series,
        )?;
        plots.push((
            format!("Latency of every system at {rate} msg/s"),
            file.to_owned(),
        ));
    }
    for system in &summary.systems {
        let mut series: Vec<SpectrumSeries<'_>> = system
            .fixed
            .iter()
            .zip(&summary.fractions)
            .filter_map(|(run, fraction)| {
                histogram_of(run, "produce", histograms).map(|histogram| SpectrumSeries {
                    label: format!("produce at {:.0}% of max", fraction * 100.0),
                    histogram,
                    unit_us: 1.0,
                })
            })
            .collect();
        series.extend(raw_series());
        let name = &system.system.name;
        let file = format!("spectrum_{name}.png");
        plot_percentile_spectrum(
            &dir.join(&file),
            &format!("{name}: produce latency (from intended send time)"),
            &series,
        )?;
        plots.push((
            format!("{name}: produce latency at each fraction of its maximum"),
            file,
        ));
    }
    let mut lines = Vec::new();
    for system in &summary.systems {
        let runs: Vec<&RunSummary> = system.fixed.iter().chain(system.same_rate.iter()).collect();
        let mut sorted = runs.clone();
        sorted.sort_by(|a, b| a.acked_mb_per_s.total_cmp(&b.acked_mb_per_s));
        for (what, pick) in [
            (
                "p99",
                (|r: &RunSummary| r.produce_latency.p99_us) as fn(&RunSummary) -> f64,
            ),
            ("p99.9", |r: &RunSummary| r.produce_latency.p99_9_us),
        ] {
            lines.push(XySeries {
                label: format!("{} produce {what}", system.system.name),
                points: sorted
                    .iter()
                    .map(|r| (r.acked_mb_per_s, pick(r) / 1000.0))
                    .collect(),
            });
        }
    }
    let file = "latency_vs_throughput.png";
    plot_xy(
        &dir.join(file),
        "produce latency against throughput (fixed-rate runs)",
        ("acknowledged MB/s", "latency (ms)"),
        &lines,
        true,
    )?;
    plots.push(("Latency against throughput".to_owned(), file.to_owned()));
    let timelines: Vec<XySeries> = summary
        .systems
        .iter()
        .map(|system| XySeries {
            label: format!("{} max-rate run", system.system.name),
            points: system
                .max
                .timeline
                .iter()
                .map(|p| (p.t_s, p.acked_mb_per_s))
                .collect(),
        })
        .collect();
    let file = "throughput_over_time.png";
    plot_xy(
        &dir.join(file),
        "acknowledged throughput over time, max-rate runs (warm-up included)",
        ("seconds", "MB/s"),
        &timelines,
        false,
    )?;
    plots.push(("Throughput over time".to_owned(), file.to_owned()));
    for (_, file) in &plots {
        written.push(dir.join(file));
    }
    let notes = std::fs::read_to_string(dir.join("notes.md")).ok();
    let report = dir.join("report.md");
    std::fs::write(&report, report_markdown(summary, &plots, notes.as_deref()))
        .with_context(|| format!("writing {}", report.display()))?;
    written.push(report);
    Ok(written)
}
