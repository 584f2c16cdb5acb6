//! The run folder of `keel-bench storage`, and its part of `keel-bench report DIR`:
//!
//! ```text
//!   results/<date>_<gitsha>_<host>/
//!     command.txt, machine.json   the exact argv; CPU, memory, kernel, file system
//!     summary.json                every cell, pass by pass, and the raw limits (StorageSummary)
//!     <target>_<axis>_<value>.hdr every cell's latency over its passes, µs (HDR V2)
//!     raw_fdatasync_4k.hdr        the raw fdatasync latency over every raw pass, µs
//!     report.md                   the tables, the plots, notes.md if present
//!     <target>_throughput.png     fraction of the raw limit per cell, grouped by axis
//!     <target>_p99.png            p99 latency per cell
//!     <target>_spectrum.png       latency spectra of the best and worst cells
//!     cpu_per_mib.png             CPU ms per MiB of each backend
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use hdrhistogram::Histogram;

use super::markdown;
use super::matrix::Target;
use super::summary::{CellResult, StorageSummary, KIND};
use super::StorageRun;
use crate::plot::{plot_bars, plot_percentile_spectrum, Bar, SpectrumSeries};
use crate::report::{by_file, load_histograms, read_summary, summary_kind, write_run_folder};

/// Writes the whole run folder into `dir` (which exists); returns the paths written.
pub fn write_run(dir: &Path, run: &StorageRun) -> anyhow::Result<Vec<PathBuf>> {
    let s = &run.summary;
    write_run_folder(dir, &s.command, &s.machine, &run.histograms, s, |h| {
        render(dir, s, h)
    })
}

/// Whether `dir` holds a storage run (its summary says so).
pub fn is_storage_dir(dir: &Path) -> bool {
    summary_kind(dir).as_deref() == Some(KIND)
}

/// `keel-bench report DIR` for a storage run: `report.md` and the plots from `summary.json`
/// and the histograms it names.
pub fn regenerate(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let summary: StorageSummary = read_summary(dir)?;
    let files: Vec<&str> = summary
        .cells
        .iter()
        .filter_map(|c| c.histogram_file.as_deref())
        .chain(summary.raw_fdatasync_histogram_file.as_deref())
        .collect();
    let loaded = load_histograms(dir, files)?;
    render(dir, &summary, &by_file(&loaded))
}

fn render(
    dir: &Path,
    s: &StorageSummary,
    histograms: &HashMap<&str, &Histogram<u64>>,
) -> anyhow::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let mut plots = Vec::new();
    let mut draw = |file: String, title: String, f: &dyn Fn(&Path, &str) -> anyhow::Result<()>| {
        let path = dir.join(&file);
        f(&path, &title)?;
        plots.push((title, file));
        written.push(path);
        anyhow::Ok(())
    };
    for target in [Target::Engine, Target::Broker] {
        let cells: Vec<&CellResult> = s.cells_of(target).collect();
        if cells.iter().all(|c| c.mb_per_s.is_none()) {
            continue;
        }
        let t = target.name();
        let bars = cell_bars(&cells, |c| c.fraction_of_raw_qd32.map(|f| f * 100.0));
        draw(
            format!("{t}_throughput.png"),
            format!("{t} cells: throughput as % of the raw O_DIRECT QD32 write at the batch size"),
            &|p, title| plot_bars(p, title, "% of the raw limit (same run)", &bars),
        )?;
        let bars = cell_bars(&cells, |c| c.latency.as_ref().map(|l| l.p99_us / 1e3));
        draw(
            format!("{t}_p99.png"),
            format!("{t} cells: p99 latency"),
            &|p, title| plot_bars(p, title, "p99 latency (ms)", &bars),
        )?;
        let series = spectrum_series(s, &cells, histograms);
        if !series.is_empty() {
            draw(
                format!("{t}_spectrum.png"),
                format!("{t} cells: latency spectra of the best and worst cells (by p99)"),
                &|p, title| plot_percentile_spectrum(p, title, &series),
            )?;
        }
    }
    let bars = cpu_bars(s);
    if !bars.is_empty() {
        draw(
            "cpu_per_mib.png".to_owned(),
            "CPU time per MiB written, per backend (io_backend axis)".to_owned(),
            &|p, title| plot_bars(p, title, "CPU ms per MiB acknowledged", &bars),
        )?;
    }
    let notes = std::fs::read_to_string(dir.join("notes.md")).ok();
    let page = markdown::render(s, &plots, notes.as_deref());
    let md = dir.join("report.md");
    std::fs::write(&md, page).with_context(|| format!("writing {}", md.display()))?;
    written.push(md);
    Ok(written)
}

/// One bar per cell that measured something; the baseline grey, the axes in turn colours.
fn cell_bars(cells: &[&CellResult], value: impl Fn(&CellResult) -> Option<f64>) -> Vec<Bar> {
    let mut axes: Vec<&str> = Vec::new();
    cells
        .iter()
        .filter_map(|c| {
            let v = value(c)?;
            let axis = c.cell.axis.as_str();
            if !axes.contains(&axis) {
                axes.push(axis);
            }
            let index = axes.iter().position(|a| *a == axis).unwrap_or(0);
            Some(Bar {
                label: markdown::cell_label(&c.cell),
                value: v,
                color_index: if axis == "baseline" {
                    0
                } else {
                    1 + (index % 3)
                },
            })
        })
        .collect()
}

/// The baseline, the best and the worst cell by p99, and the raw fdatasync.
fn spectrum_series<'a>(
    s: &StorageSummary,
    cells: &[&CellResult],
    histograms: &HashMap<&str, &'a Histogram<u64>>,
) -> Vec<SpectrumSeries<'a>> {
    let measured: Vec<&CellResult> = cells
        .iter()
        .copied()
        .filter(|c| c.latency.is_some() && c.histogram_file.is_some())
        .collect();
    let p99 = |c: &&CellResult| c.latency.as_ref().map_or(f64::MAX, |l| l.p99_us);
    let best = measured.iter().min_by(|a, b| p99(a).total_cmp(&p99(b)));
    let worst = measured.iter().max_by(|a, b| p99(a).total_cmp(&p99(b)));
    let baseline = measured.iter().find(|c| c.cell.axis == "baseline");
    let mut picked: Vec<(&str, &CellResult)> = Vec::new();
    for (role, cell) in [("baseline", baseline), ("best", best), ("worst", worst)] {
        if let Some(c) = cell {
            if picked.iter().all(|(_, p)| p.cell.key != c.cell.key) {
                picked.push((role, c));
            }
        }
    }
    let mut series: Vec<SpectrumSeries<'a>> = picked
        .into_iter()
        .filter_map(|(role, c)| {
            let histogram = histograms.get(c.histogram_file.as_deref()?)?;
            Some(SpectrumSeries {
                label: if role == "baseline" {
                    markdown::cell_label(&c.cell)
                } else {
                    format!("{role}: {}", markdown::cell_label(&c.cell))
                },
                histogram,
                unit_us: 1.0,
            })
        })
        .collect();
    if let Some(h) = s
        .raw_fdatasync_histogram_file
        .as_deref()
        .and_then(|f| histograms.get(f))
    {
        series.push(SpectrumSeries {
            label: "raw fdatasync (4 KiB)".to_owned(),
            histogram: h,
            unit_us: 1.0,
        });
    }
    series
}

/// CPU ms per MiB of the baseline and every io_backend cell, engine then broker.
fn cpu_bars(s: &StorageSummary) -> Vec<Bar> {
    s.cells
        .iter()
        .filter(|c| c.cell.axis == "baseline" || c.cell.axis == "io_backend")
        .filter_map(|c| {
            Some(Bar {
                label: format!("{} {}", c.cell.target.name(), c.cell.settings.io_backend),
                value: c.cpu_ms_per_mib?,
                color_index: match c.cell.target {
                    Target::Engine => 1,
                    Target::Broker => 3,
                },
            })
        })
        .collect()
}
