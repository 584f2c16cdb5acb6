//! `report.md` of a storage run.

use std::fmt::Write as _;

use super::matrix::{Cell, Target};
use super::summary::{CellResult, Spread, StorageSummary};
use crate::units::format_bytes_human;

/// A cell as a table or plot label: `baseline` or `axis = value`.
pub fn cell_label(cell: &Cell) -> String {
    if cell.axis == "baseline" {
        format!("baseline ({})", cell.settings.io_backend)
    } else {
        format!("{} = {}", cell.axis, cell.value)
    }
}

fn ms(us: f64) -> String {
    let v = us / 1e3;
    if v < 10.0 {
        format!("{v:.2}")
    } else if v < 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

fn spread(s: &Spread) -> String {
    format!("{:.1} ({:.1}–{:.1})", s.mean, s.min, s.max)
}

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or_else(|| "–".to_owned(), f)
}

/// The whole page.
pub fn render(s: &StorageSummary, plots: &[(String, String)], notes: Option<&str>) -> String {
    let mut out = String::new();
    header(&mut out, s);
    if let Some(notes) = notes {
        let _ = writeln!(out, "## Notes\n\n{}\n", notes.trim());
    }
    method(&mut out, s);
    raw(&mut out, s);
    for target in [Target::Engine, Target::Broker] {
        if s.cells_of(target).next().is_some() {
            cell_table(&mut out, s, target);
        }
    }
    cpu_table(&mut out, s);
    failures(&mut out, s);
    if !plots.is_empty() {
        out.push_str("## Plots\n\n");
        for (title, file) in plots {
            let _ = writeln!(out, "### {title}\n\n![{title}]({file})\n");
        }
    }
    out
}

fn header(out: &mut String, s: &StorageSummary) {
    let command = s
        .command
        .iter()
        .map(|a| crate::report::shell_quote(a))
        .collect::<Vec<_>>()
        .join(" ");
    let m = &s.machine;
    let _ = writeln!(
        out,
        "# Storage matrix: I/O backends and storage settings (issue 8)\n\n\
         - command: `{command}`\n\
         - workload: `{}` ({}), {} pass{}\n\
         - git: `{}`{}\n\
         - machine: {} ({} CPUs), {:.1} GiB, kernel {}, {} on `{}`\n\
         - load average at start {}, at end {}; run took {:.1} min\n",
        s.workload_file,
        s.workload.name,
        s.workload.passes,
        if s.workload.passes == 1 { "" } else { "es" },
        s.git.commit.as_deref().unwrap_or("unknown"),
        if s.git.dirty_paths.is_empty() {
            String::new()
        } else {
            format!(" (with {} uncommitted paths)", s.git.dirty_paths.len())
        },
        m.cpu_model.as_deref().unwrap_or("unknown CPU"),
        m.cpu_available_count,
        m.memory_total_bytes.unwrap_or(0) as f64 / f64::from(1u32 << 30),
        m.kernel_release,
        m.storage
            .mount
            .as_ref()
            .map_or("unknown fs", |mt| mt.fs_type.as_str()),
        m.storage
            .mount
            .as_ref()
            .map_or("unknown device".to_owned(), |mt| mt.device.clone()),
        load(s.load_average_start),
        load(s.load_average_end),
        s.finished_at_unix_s.saturating_sub(s.started_at_unix_s) as f64 / 60.0,
    );
}

fn load(l: Option<[f64; 3]>) -> String {
    l.map_or_else(
        || "unknown".to_owned(),
        |[a, b, c]| format!("{a:.1} / {b:.1} / {c:.1}"),
    )
}

fn method(out: &mut String, s: &StorageSummary) {
    let b = &s.workload.baseline;
    let _ = writeln!(
        out,
        "## How the matrix is built\n\n\
         Not the cartesian product: each axis is swept alone around one baseline cell, every \
         other setting at the baseline's value, so each row differs from its baseline in one \
         setting. Baseline: backend `{}`, fsync `{}`, segments {}, writes up to {}, \
         preallocation {}, batch cache {}, group commit {}. Writes are whole 4 KiB blocks at \
         4 KiB-aligned positions whatever the backend (O_DIRECT needs it; the buffered pwrite \
         backend writes the same blocks), so alignment is fixed, and `write_bytes_max` is the \
         write size axis.\n\n\
         Every cell runs {} time(s); the passes alternate the order of the cells (forward, \
         reverse, ...) so a drifting machine moves every cell alike, and the raw probes run \
         before every pass and after the last. A cell's throughput is the mean of its passes \
         (least and most in brackets); its latency percentiles come from the histograms of \
         all its passes merged. The fraction is the mean over the mean of the raw probes at \
         the cell's batch size rounded up to the block: `× QD32` against O_DIRECT sequential \
         writes 32 deep (the disk's ceiling), `× w+fsync` against write + fdatasync of each \
         block one at a time (what a log syncing every write alone could do).\n",
        b.io_backend,
        b.fsync,
        format_bytes_human(b.segment_bytes_max.0 as usize),
        format_bytes_human(b.write_bytes_max.0 as usize),
        format_bytes_human(b.preallocate_bytes.0 as usize),
        format_bytes_human(b.batch_cache_bytes_max.0 as usize),
        b.group_commit,
        s.workload.passes,
    );
    if let Some(e) = &s.workload.engine {
        let _ = writeln!(
            out,
            "Engine cells: keel-engine partitions driven directly (no network), {} \
             partition(s) × {} closed-loop appender(s), {} batches, on one executor thread of \
             the backend's runtime (glommio for `glommio`, the poll runtime for `uring` and \
             `pwrite`), {:.1} s measured after {:.1} s of warm-up. Latency is each append's, \
             from the call to its acknowledgement (after the fdatasync that covers it with \
             fsync always). CPU is keel-bench's process time over the window: the executor \
             thread and its I/O threads (io_uring workers, the SQPOLL thread, the pwrite \
             blocking pool).\n",
            e.partitions,
            e.appenders_per_partition,
            format_bytes_human(e.batch_bytes.0 as usize),
            e.seconds,
            e.warmup_seconds,
        );
    }
    if let Some(b) = &s.workload.broker {
        let w = &b.workload;
        let _ = writeln!(
            out,
            "Broker cells: `keel` started afresh with the cell's flags on an empty data dir \
             (`{}`), loaded over loopback by keel-bench's own Kafka producers at the maximum \
             rate (each keeps {} requests in flight): {} topic(s) × {} partitions, {} \
             producers, {} consumer(s), {} B messages, batches of {} with linger {} ms, \
             acks={}, {:.1} s measured after {:.1} s of warm-up. Latency is produce latency \
             (acknowledgement time minus the time the message was due). CPU is the broker \
             process's (utime + stime of /proc/PID/stat over the window, its io_uring workers \
             and blocking pool included).\n",
            s.keel_command
                .as_deref()
                .map_or("keel".to_owned(), |k| {
                    let name = std::path::Path::new(k)
                        .file_name()
                        .map_or(k.to_owned(), |n| n.to_string_lossy().into_owned());
                    format!("{name} {}", b.extra_args.join(" "))
                })
                .trim(),
            w.in_flight_max,
            w.topics,
            w.partitions,
            w.producers,
            w.consumers,
            w.message_bytes,
            format_bytes_human(w.batch_bytes),
            w.linger_ms,
            w.acks,
            b.seconds,
            b.warmup_seconds,
        );
    }
}

fn raw(out: &mut String, s: &StorageSummary) {
    out.push_str(
        "## Raw limits (same run)\n\n\
         | write size | O_DIRECT write QD32, MB/s | write + fdatasync QD1, MB/s |\n|---:|---:|---:|\n",
    );
    for r in &s.raw_limits {
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            format_bytes_human(r.block_bytes),
            spread(&r.write_qd32_mb_per_s),
            spread(&r.write_fsync_qd1_mb_per_s)
        );
    }
    out.push_str(
        "\nMean (least–most) over the raw passes. By pass, before the cells and after:\n\n\
         | pass | at (s into the run) | fdatasync 4 KiB p50 ms | p99 ms | p99.9 ms | QD32 MB/s by size |\n\
         |---:|---:|---:|---:|---:|---|\n",
    );
    for (i, p) in s.raw_passes.iter().enumerate() {
        let qd32: Vec<String> = p
            .writes
            .iter()
            .filter(|w| !w.fsync_each)
            .map(|w| format!("{}: {:.0}", format_bytes_human(w.block_bytes), w.mb_per_s))
            .collect();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            i + 1,
            p.at_unix_s.saturating_sub(s.started_at_unix_s),
            ms(p.fdatasync_4k.p50_us),
            ms(p.fdatasync_4k.p99_us),
            ms(p.fdatasync_4k.p99_9_us),
            qd32.join(", ")
        );
    }
    out.push('\n');
}

fn cell_table(out: &mut String, s: &StorageSummary, target: Target) {
    let _ = writeln!(
        out,
        "## {} cells\n\n\
         | cell | MB/s mean (min–max) | × QD32 | × w+fsync | p50 ms | p99 ms | p99.9 ms | p99.99 ms | CPU ms/MiB |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|",
        match target {
            Target::Engine => "Engine",
            Target::Broker => "Broker",
        }
    );
    for c in s.cells_of(target) {
        let l = c.latency.as_ref();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            cell_label(&c.cell),
            c.mb_per_s.as_ref().map_or("failed".to_owned(), spread),
            opt(c.fraction_of_raw_qd32, |f| format!("{f:.2}")),
            opt(c.fraction_of_raw_fsync_qd1, |f| format!("{f:.2}")),
            opt(l.map(|l| l.p50_us), ms),
            opt(l.map(|l| l.p99_us), ms),
            opt(l.map(|l| l.p99_9_us), ms),
            opt(l.map(|l| l.p99_99_us), ms),
            opt(c.cpu_ms_per_mib, |v| format!("{v:.2}")),
        );
    }
    out.push('\n');
}

fn cpu_table(out: &mut String, s: &StorageSummary) {
    let rows: Vec<&CellResult> = s
        .cells
        .iter()
        .filter(|c| c.cell.axis == "baseline" || c.cell.axis == "io_backend")
        .collect();
    if rows.is_empty() {
        return;
    }
    out.push_str(
        "## CPU time per MiB written, per backend\n\n\
         Engine cells: keel-bench's process time over the window split into the executor \
         thread and the rest (I/O threads: `iou-wrk`, `iou-sqp`, `blocking`); with the thread \
         kinds seen (seconds over all passes, from /proc/self/task/*/schedstat; threads that \
         exited meanwhile are missed there but not in the process total). Broker cells: the \
         broker process over the window; its thread kinds over the whole run, warm-up \
         included (`keel-shard` is a shard's executor).\n\n\
         | cell | MB/s | CPU ms/MiB | executor ms/MiB | I/O threads ms/MiB | threads (s) |\n\
         |---|---:|---:|---:|---:|---|\n",
    );
    for c in rows {
        let mut kinds: std::collections::BTreeMap<&str, f64> = std::collections::BTreeMap::new();
        for cpu in c.runs.iter().filter_map(|r| r.cpu.as_ref()) {
            for (kind, seconds) in &cpu.by_thread_kind_s {
                *kinds.entry(kind.as_str()).or_default() += seconds;
            }
        }
        let kinds: Vec<String> = kinds
            .into_iter()
            .filter(|(_, v)| *v >= 0.005)
            .map(|(k, v)| format!("{k} {v:.2}"))
            .collect();
        let _ = writeln!(
            out,
            "| {} {} | {} | {} | {} | {} | {} |",
            c.cell.target.name(),
            c.cell.settings.io_backend,
            opt(c.mb_per_s.map(|m| m.mean), |v| format!("{v:.1}")),
            opt(c.cpu_ms_per_mib, |v| format!("{v:.2}")),
            opt(c.executor_cpu_ms_per_mib, |v| format!("{v:.2}")),
            opt(c.io_threads_cpu_ms_per_mib, |v| format!("{v:.2}")),
            kinds.join(", ")
        );
    }
    out.push('\n');
}

fn failures(out: &mut String, s: &StorageSummary) {
    let failed: Vec<(&CellResult, usize, &str)> = s
        .cells
        .iter()
        .flat_map(|c| {
            c.runs
                .iter()
                .filter_map(move |r| r.error.as_deref().map(|e| (c, r.pass, e)))
        })
        .collect();
    if failed.is_empty() {
        return;
    }
    out.push_str("## Failed or erring passes\n\n");
    for (c, pass, error) in failed {
        let first = error.lines().next().unwrap_or_default();
        let _ = writeln!(out, "- {} pass {}: {}", c.cell.key, pass + 1, first);
    }
    out.push('\n');
}
