//! `report.md` of an engine run, a pure function of the summary (and the hand-written
//! `notes.md`, when the run folder has one), so `keel-bench report DIR` redraws it exactly.

use std::fmt::Write as _;

use super::summary::{
    AppendFigures, Bound, Check, CpuPieces, EngineSummary, IoBreakdown, RawWrite,
    CACHE_READ_GB_PER_S_TARGET,
};
use crate::histogram::LatencySummary;
use crate::report::{format_us, percentile_table_markdown};
use crate::units::format_bytes_human;

/// The whole page. `plots` are (caption, file name) pairs to embed at the end.
pub fn render(s: &EngineSummary, plots: &[(String, String)], notes: Option<&str>) -> String {
    let mut page = String::from("# keel-engine benchmark (issue 3)\n\n");
    page.push_str(&run_facts(s));
    page.push_str(&verdict(s));
    page.push_str(&limits_section(s));
    page.push_str(&append_1m_section(s));
    page.push_str(&append_16k_section(s));
    page.push_str(&read_section(s));
    page.push_str(&never_section(s));
    page.push_str(&all_checks(&s.checks));
    page.push_str(&breakdown_section(s));
    if let Some(notes) = notes {
        page.push_str("## Analysis (notes.md)\n\n");
        page.push_str(notes.trim());
        page.push_str("\n\n");
    }
    if !plots.is_empty() {
        page.push_str("## Plots\n\n");
        for (caption, file) in plots {
            let _ = writeln!(page, "![{caption}]({file})\n");
        }
    }
    page
}

fn run_facts(s: &EngineSummary) -> String {
    let m = &s.machine;
    let st = &s.settings;
    let load = |l: Option<[f64; 3]>| {
        l.map_or_else(
            || "?".to_owned(),
            |[a, b, c]| format!("{a:.2} / {b:.2} / {c:.2}"),
        )
    };
    let mount = m.storage.mount.as_ref();
    let mut out = String::new();
    let _ = writeln!(out, "- Command: `{}`", s.command.join(" "));
    let _ = writeln!(
        out,
        "- Commit: `{}`{}",
        s.git.commit.as_deref().unwrap_or("unknown"),
        if s.git.dirty_paths.is_empty() {
            String::new()
        } else {
            format!(
                " with uncommitted changes in {} (see summary.json)",
                s.git.dirty_paths.len()
            )
        }
    );
    let _ = writeln!(
        out,
        "- Machine `{}`: {}, {} CPUs ({} available), {:.1} GiB, {} kernel {}",
        m.hostname,
        m.cpu_model.as_deref().unwrap_or("unknown CPU"),
        m.cpu_logical_count,
        m.cpu_available_count,
        m.memory_total_bytes.unwrap_or(0) as f64 / f64::from(1u32 << 30),
        m.os.as_deref().unwrap_or("Linux"),
        m.kernel_release
    );
    let _ = writeln!(
        out,
        "- Disk: `{}` on `{}` ({}); the raw probes and the engine wrote to the same directory",
        m.storage.dir.display(),
        mount.map_or("?", |x| x.device.as_str()),
        mount.map_or("?", |x| x.fs_type.as_str()),
    );
    if let Some(irq) = &m.storage.disk_interrupts {
        let _ = writeln!(
            out,
            "- Interrupts: {} (the engine's executor is pinned where they land unless \
             `--cpu` says otherwise: see `bench/src/limits/disk_irq.rs`)",
            irq.describe()
        );
    }
    let _ = writeln!(
        out,
        "- Load average (1/5/15 min): {} at the start, {} at the end (2 shared cores)",
        load(s.load_average_start),
        load(s.load_average_end)
    );
    let _ = writeln!(
        out,
        "- Each raw probe and engine scenario measured {:.1} s, each scenario after {:.1} s of \
         unrecorded warm-up; breakdown runs {:.1} s. I/O backend `{}`. Engine executor pinned to CPU {}. \
         Segments {}, retention {} per partition (checked every 250 ms), batch cache {}, \
         write_bytes_max {}, raw probe files {}, spare segments kept per partition {}.\n",
        st.seconds,
        st.warmup_seconds,
        st.breakdown_seconds,
        st.backend_name(),
        st.cpu.map_or_else(|| "none".to_owned(), |c| c.to_string()),
        bytes(st.segment_bytes_max),
        bytes(st.retention_bytes),
        format_bytes_human(st.batch_cache_bytes),
        format_bytes_human(st.write_bytes_max),
        bytes(st.probe_file_bytes),
        st.segment_spares_max,
    );
    out
}

fn bytes(n: u64) -> String {
    format_bytes_human(usize::try_from(n).unwrap_or(usize::MAX))
}

fn pass_word(pass: bool) -> &'static str {
    if pass {
        "**pass**"
    } else {
        "**short**"
    }
}

fn figure(value: f64, unit: &str) -> String {
    match unit {
        "GB/s" => format!("{value:.2} GB/s"),
        "µs" => format!("{} µs", format_us(value)),
        _ => format!("{value:.0} {unit}"),
    }
}

/// A table of checks; `fair_column` adds a column marking the comparison each verdict uses.
fn check_rows(checks: &[&Check], fair_column: bool) -> String {
    let mut out =
        String::from("| scenario | what | figure | compared with | fraction | target | result |");
    out.push_str(if fair_column { " fair |\n" } else { "\n" });
    out.push_str("|---|---|---:|---|---:|---|---|");
    out.push_str(if fair_column { "---|\n" } else { "\n" });
    for c in checks {
        let fraction = match c.bound {
            Bound::AtMost(_) => format!("{:.2}×", c.fraction),
            Bound::AtLeast(_) => format!("{:.1}%", c.fraction * 100.0),
        };
        let _ = write!(
            out,
            "| {} | {} | {} | {} ({}) | {} | {} | {} |",
            c.scenario,
            c.what,
            figure(c.figure, &c.figure_unit),
            c.reference_label,
            figure(c.reference, &c.figure_unit),
            fraction,
            c.bound.describe(),
            pass_word(c.pass)
        );
        if fair_column {
            out.push_str(if c.fair { " yes |" } else { " |" });
        }
        out.push('\n');
    }
    out
}

fn verdict(s: &EngineSummary) -> String {
    let fair: Vec<&Check> = s.checks.iter().filter(|c| c.fair).collect();
    let mut out = String::from("## Verdict\n\nEach target against the limit it is fairly compared with (why each is the fair one is said in its section; every other comparison is in [All comparisons](#all-comparisons)).\n\n");
    out.push_str(&check_rows(&fair, false));
    out.push('\n');
    let short: Vec<&&Check> = fair.iter().filter(|c| !c.pass).collect();
    if fair.is_empty() {
        out.push_str("This (partial) run measured none of the targets.\n\n");
    } else if short.is_empty() {
        out.push_str("Every target is met on this run.\n\n");
    } else {
        let _ = writeln!(
            out,
            "{} of {} targets are short; [Where the time goes](#where-the-time-goes) says why, \
             from measurement.\n",
            short.len(),
            fair.len()
        );
    }
    out
}

fn limits_section(s: &EngineSummary) -> String {
    let mut out = String::from(
        "## 1. The raw limit, same run, same file system\n\n\
         io_uring, O_DIRECT, sequential, into preallocated files (`keel-bench limits`' probes, \
         called from this run), each just before the engine scenarios compared with it. The \
         plain probes wrap around their file, so after the first pass they overwrite blocks \
         already written; *unwritten blocks* probes turn the file's chunk after next back into \
         unwritten extents as they go (`FALLOC_FL_ZERO_RANGE`), so every write converts an \
         extent but lands on blocks the file keeps; *new files* probes write as a log does: a \
         new file per segment, grown by `fallocate` 32 MiB ahead of the writes, the file before \
         the previous one deleted, so every write lands on blocks newly taken from the free \
         space (on a mount with `discard`, blocks the device was told are free, which can write \
         slower: `docs/engine-x1-investigation.md`). New files are the fair limit of every \
         scenario, unless it recycled spare segments (`--segment-spares`, in the settings \
         above, and retention deleted segments in its window): then the log overwrites \
         allocated blocks, and the plain (reused-block) probes are. Each probe ran twice, \
         before and after the engine scenarios of its phase; the limit is the mean, and the \
         two passes show how far the machine drifted meanwhile.\n\n\
         | probe | MB/s before | MB/s after | limit (mean) MB/s | IOPS before |\n|---|---:|---:|---:|---:|\n",
    );
    for w in &s.raw_writes {
        let _ = writeln!(
            out,
            "| {} | {:.0} | {} | {:.0} | {:.0} |",
            w.label(),
            w.result.mb_per_s,
            w.after
                .as_ref()
                .map_or_else(|| "?".to_owned(), |a| format!("{:.0}", a.mb_per_s)),
            w.mb_per_s(),
            w.result.iops
        );
    }
    out.push_str("\nfdatasync latency (µs), an O_DIRECT block write then fdatasync, the fdatasync timed alone; before, after, and both passes (the reference):\n\n");
    let mut rows: Vec<(String, &LatencySummary)> = Vec::new();
    for f in &s.raw_fdatasync {
        let size = format_bytes_human(f.block_bytes);
        rows.push((format!("raw fdatasync ({size}), before"), &f.before));
        if let Some(after) = &f.after {
            rows.push((format!("raw fdatasync ({size}), after"), after));
        }
        rows.push((format!("raw fdatasync ({size}), both"), &f.latency));
    }
    out.push_str(&table(&rows));
    out.push('\n');
    out
}

fn table(rows: &[(String, &LatencySummary)]) -> String {
    let rows: Vec<(&str, &LatencySummary)> = rows.iter().map(|(n, l)| (n.as_str(), *l)).collect();
    percentile_table_markdown(&rows)
}

/// A throughput table: one row per scenario, one column per raw limit of the phase.
fn throughput_table(appends: &[&AppendFigures]) -> String {
    let Some(first) = appends.first() else {
        return String::new();
    };
    let mut out = String::from("| scenario | MB/s |");
    for f in &first.fractions {
        let _ = write!(
            out,
            " vs {} ({:.0} MB/s) |",
            f.limit_label, f.limit_mb_per_s
        );
    }
    out.push_str(" segments deleted |\n|---|---:|");
    out.push_str(&"---:|".repeat(first.fractions.len() + 1));
    out.push('\n');
    for a in appends {
        let _ = write!(out, "| {} | {:.0} |", a.title, a.mb_per_s);
        for f in &a.fractions {
            let _ = write!(out, " {:.1}% |", f.fraction * 100.0);
        }
        let _ = writeln!(out, " {} |", a.segments_deleted);
    }
    out
}

fn latency_rows<'a>(appends: &[&'a AppendFigures]) -> Vec<(String, &'a LatencySummary)> {
    appends
        .iter()
        .map(|a| (format!("append, {}", a.title), &a.latency))
        .collect()
}

fn appends_where<'a>(s: &'a EngineSummary, batch: usize, fsync: &str) -> Vec<&'a AppendFigures> {
    s.appends
        .iter()
        .filter(|a| a.batch_bytes == batch && a.fsync == fsync)
        .collect()
}

fn append_1m_section(s: &EngineSummary) -> String {
    let appends = appends_where(s, 1 << 20, "always");
    let mut out = String::from("## 2a. 1 MiB batches, fsync always, one partition\n\nTarget: at least 90% of the raw sequential O_DIRECT write throughput. MB/s of batch bytes acknowledged:\n\n");
    out.push_str(&throughput_table(&appends));
    out.push_str("\nAppend latency (µs):\n\n");
    out.push_str(&table(&latency_rows(&appends)));
    out.push_str(
        "\n**Which comparison is fair.** With fsync=always an append is acknowledged only after \
         an fdatasync that covers it, and one appender has one append in flight. What it asks of \
         the disk is therefore exactly the raw *write+fdatasync, QD1* probe with the same block, \
         into *new files* because a log only ever appends to new segments: that is the fair \
         limit for one \
         appender. Raw write without fdatasync measures a disk that never makes anything \
         durable (here a host write-back cache absorbs it), which no log that acknowledges only \
         durable data can match with one writer; QD32 in addition overlaps 32 writes, which an \
         appender waiting for its acknowledgement never has; and the plain probes mostly \
         overwrite blocks written on an earlier pass, which is cheaper than what a log does. \
         With 4 appenders group commit may merge up to `write_bytes_max` (4 MiB) into one write \
         and one fdatasync, so the fair limit there is raw *write+fdatasync 4 MiB, QD1, new \
         files*: the same disk work with no CPU time between the operations. Issue 3's \
         literal target (90% of raw sequential write, no fdatasync) is shown as well.\n\n",
    );
    out
}

fn append_16k_section(s: &EngineSummary) -> String {
    let appends = appends_where(s, 16 << 10, "always");
    let mut out = String::from("## 2b. 16 KiB batches, fsync always, 64 appenders over 8 partitions\n\nTargets: p99 append latency at most 2× the raw fdatasync p99 of this run, and throughput at least 50% of the raw limit at 16 KiB. The fair throughput limit is raw 16 KiB writes at QD32 into new files: 64 appenders keep many batches in flight, as QD32 does, and the target asks for half of it because every acknowledgement also waits for an fdatasync. The fair latency reference is the 16 KiB fdatasync probe (the batch size appended).\n\n");
    out.push_str(&throughput_table(&appends));
    out.push_str("\nAppend latency against the raw fdatasync latency (µs):\n\n");
    let mut rows = latency_rows(&appends);
    rows.extend(s.raw_fdatasync.iter().map(|f| {
        (
            format!("raw fdatasync ({})", format_bytes_human(f.block_bytes)),
            &f.latency,
        )
    }));
    out.push_str(&table(&rows));
    out.push('\n');
    out
}

fn read_section(s: &EngineSummary) -> String {
    let mut out = format!(
        "## 2c. Reads of 1 MiB at random offsets, one core\n\nTarget: at least \
         {CACHE_READ_GB_PER_S_TARGET:.0} GB/s per core handed out as `Bytes` from the batch \
         cache. From the cache a read is a map lookup and one reference count per batch, no \
         copy; from disk (cache 0, for contrast) it is an O_DIRECT read, a copy out of the DMA \
         buffer and a CRC check of every batch.\n\n\
         | source | filled | batch | GB/s | reads/s | p50 µs | p99 µs | max µs |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|\n"
    );
    for r in &s.reads {
        let source = if r.cache_bytes == 0 {
            "disk (cache 0)".to_owned()
        } else {
            format!("batch cache ({})", format_bytes_human(r.cache_bytes))
        };
        let _ = writeln!(
            out,
            "| {source} | {} | {} | {:.2} | {:.0} | {} | {} | {} |",
            bytes(r.filled_bytes),
            format_bytes_human(r.batch_bytes),
            r.gb_per_s,
            r.reads_per_s,
            format_us(r.latency.p50_us),
            format_us(r.latency.p99_us),
            format_us(r.latency.max_us)
        );
    }
    out.push('\n');
    out
}

fn never_section(s: &EngineSummary) -> String {
    let mut out = String::from("## 2d. fsync never, for contrast\n\nThe same scenarios with no fdatasync: an append completes once its write does. The fair limit is raw write at QD1 into new files (one write in flight per partition).\n\n");
    for batch in [1 << 20, 16 << 10] {
        let appends = appends_where(s, batch, "never");
        out.push_str(&throughput_table(&appends));
        out.push('\n');
    }
    let never: Vec<&AppendFigures> = s.appends.iter().filter(|a| a.fsync == "never").collect();
    out.push_str("Append latency (µs):\n\n");
    out.push_str(&table(&latency_rows(&never)));
    out.push('\n');
    out
}

fn all_checks(checks: &[Check]) -> String {
    let refs: Vec<&Check> = checks.iter().collect();
    let mut out = String::from("## All comparisons\n\nEvery figure against every reference it can be held to; the verdict uses the one marked fair.\n\n");
    out.push_str(&check_rows(&refs, true));
    out.push('\n');
    out
}

fn breakdown_section(s: &EngineSummary) -> String {
    let mut out = String::from("## Where the time goes\n\n");
    out.push_str(&ladder_table(s));
    out.push_str(&executor_table(s));
    out.push_str(&cpu_table(&s.breakdown.cpu));
    out.push_str(&io_table(&s.breakdown.io));
    for b in &s.breakdown.io {
        out.push_str(&explain(s, b));
    }
    out.push('\n');
    out
}

/// From the raw limit to keel in steps: raw io_uring, the same I/O through the engine's
/// storage backend without the log (the floor), the engine.
fn ladder_table(s: &EngineSummary) -> String {
    let backend = s.settings.backend_name();
    let mut out = format!(
        "From the raw limit to keel, step by step. *Floor*: the engine's I/O pattern without the \
         engine, tasks on the same pinned executor each writing their own file through the same \
         storage layer (the `{backend}` backend, a zeroed write buffer per write, fallocate 32 MiB \
         ahead): one block, then fdatasync, in a loop.\n\n\
         | scenario | fair raw limit | floor (same I/O via {backend}) | floor / raw | keel | keel / floor |\n\
         |---|---:|---:|---:|---:|---:|\n",
    );
    for (scenario, floor_key) in [
        ("append_1m_always_x1", "floor_1m_x1"),
        ("append_1m_always_x4", "floor_4m_x1"),
        ("append_16k_always_x64", "floor_16k_x8"),
    ] {
        let (Some(a), Some(f)) = (
            s.append(scenario),
            s.breakdown.floors.iter().find(|f| f.key == floor_key),
        ) else {
            continue;
        };
        let raw =
            super::summary::fair_limit_key(scenario, super::summary::recycled(a, &s.settings))
                .and_then(|k| s.raw_write(&k));
        let raw_mb = raw.map_or(f64::NAN, RawWrite::mb_per_s);
        let _ = writeln!(
            out,
            "| {} | {} {:.0} MB/s | {} file{} × {} {:.0} MB/s | {:.0}% | {:.0} MB/s | {:.0}% |",
            a.name,
            raw.map_or_else(|| "?".to_owned(), |r| r.label()),
            raw_mb,
            f.files,
            if f.files == 1 { "" } else { "s" },
            format_bytes_human(f.block_bytes),
            f.mb_per_s,
            f.mb_per_s / raw_mb * 100.0,
            a.mb_per_s,
            a.mb_per_s / f.mb_per_s.max(f64::MIN_POSITIVE) * 100.0,
        );
    }
    out.push_str("\nThe floor's cycles (one write and its fdatasync, µs):\n\n");
    let rows: Vec<(String, &LatencySummary)> = s
        .breakdown
        .floors
        .iter()
        .map(|f| {
            (
                format!(
                    "floor, {} file{} × {} (write {} + fdatasync {} mean)",
                    f.files,
                    if f.files == 1 { "" } else { "s" },
                    format_bytes_human(f.block_bytes),
                    format_us(f.write_us_mean),
                    format_us(f.sync_us_mean)
                ),
                &f.cycle,
            )
        })
        .collect();
    out.push_str(&table(&rows));
    out.push('\n');
    out
}

/// How the executor thread spent each scenario's window.
fn executor_table(s: &EngineSummary) -> String {
    let mut out = String::from(
        "How the engine's executor thread spent each main-run window (/proc/thread-self/schedstat \
         and getrusage): on its CPU (user and kernel time), or runnable but waiting for the CPU \
         while another thread ran there; the CPU time of the io_uring worker threads that run \
         its blocking operations (fdatasync, writes into unwritten extents), which inherit the \
         executor's affinity and so share its one core; and the executor's CPU time and minor \
         page faults per append, to hold against the CPU pieces timed alone below.\n\n\
         | scenario | on CPU | user | kernel | waiting for CPU | io_uring workers | CPU µs per append | minor faults per append |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for a in &s.appends {
        let cpu_us = a
            .executor_on_cpu_fraction
            .map(|f| f * a.elapsed_s * 1e6 / a.appends.max(1) as f64);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            a.name,
            percent(a.executor_on_cpu_fraction),
            percent(a.executor_user_fraction),
            percent(a.executor_system_fraction),
            percent(a.executor_runqueue_fraction),
            percent(a.io_workers_on_cpu_fraction),
            cpu_us.map_or_else(|| "?".to_owned(), format_us),
            a.minor_faults_per_append
                .map_or_else(|| "?".to_owned(), |f| format!("{f:.0}")),
        );
    }
    out.push('\n');
    out
}

fn percent(fraction: Option<f64>) -> String {
    fraction.map_or_else(|| "?".to_owned(), |f| format!("{:.0}%", f * 100.0))
}

fn cpu_table(cpu: &[CpuPieces]) -> String {
    let mut out = String::from("CPU work of the append path on the pinned core, µs per batch (the write buffer is per write, a group of batches). Each piece is timed alone in a loop, hot in the CPU caches: a lower bound. The *cold* columns time all three in sequence over 128 MiB of batches while retaining the write buffers, as the engine's batch cache does (it keeps slices of them), so every pass goes to memory; the page-fault column counts the fresh pages the allocator maps for them (the broker and keel-bench allocate with mimalloc, which reuses freed pages): an upper bound:\n\n| batch | validate + CRC | write buffer alloc | copy into it, baseOffset patched | total, hot | GB/s, hot | total, cold | GB/s, cold | page faults per batch, cold |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for c in cpu {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {:.2} | {} | {:.2} | {} |",
            format_bytes_human(c.batch_bytes),
            format_us(c.validate_us),
            format_us(c.dma_alloc_us),
            format_us(c.dma_copy_us),
            format_us(c.total_us()),
            c.batch_bytes as f64 / 1e3 / c.total_us().max(f64::MIN_POSITIVE),
            format_us(c.cold_total_us),
            c.batch_bytes as f64 / 1e3 / c.cold_total_us.max(f64::MIN_POSITIVE),
            c.cold_minor_faults_per_batch
                .map_or_else(|| "?".to_owned(), |f| format!("{f:.0}")),
        );
    }
    out.push('\n');
    out
}

fn io_table(io: &[IoBreakdown]) -> String {
    let mut out = String::from("The fsync-always scenarios, and 1 MiB fsync never, again on storage that times every operation (`Timed<AnyStorage>` over the same backend; µs):\n\n| scenario | MB/s | append mean | log writes/s | KiB per write | batches per write | write mean / p99 | fdatasyncs/s | batches per fdatasync | fdatasync mean / p99 / max | fallocate mean (count) | index I/O mean (count) | other I/O mean / max (count) | log I/O in flight |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for b in io {
        let _ = writeln!(
            out,
            "| {} | {:.0} | {} | {:.0} | {:.0} | {:.2} | {} / {} | {:.0} | {:.2} | {} / {} / {} | {} ({}) | {} ({}) | {} / {} ({}) | {:.0}% |",
            b.scenario,
            b.mb_per_s,
            format_us(b.append_us_mean),
            b.log_write.per_s,
            b.log_write.bytes_mean / 1024.0,
            b.batches_per_write,
            format_us(b.log_write.us_mean),
            format_us(b.log_write.us_p99),
            b.log_sync.per_s,
            b.batches_per_sync,
            format_us(b.log_sync.us_mean),
            format_us(b.log_sync.us_p99),
            format_us(b.log_sync.us_max),
            format_us(b.log_preallocate.us_mean),
            b.log_preallocate.count,
            format_us(b.index_io.us_mean),
            b.index_io.count,
            format_us(b.other_io.us_mean),
            format_us(b.other_io.us_max),
            b.other_io.count,
            b.log_io_busy_fraction * 100.0
        );
    }
    out.push_str("\nLog writes by the number of batches group commit put in them:\n\n");
    for b in io {
        let counts: Vec<String> = b
            .writes_by_batch_count
            .iter()
            .map(|(batches, writes)| format!("{batches}: {writes}"))
            .collect();
        let _ = writeln!(out, "- {}: {}", b.scenario, counts.join(", "));
    }
    out.push('\n');
    out
}

/// A measured account of one scenario's time, from its breakdown.
fn explain(s: &EngineSummary, b: &IoBreakdown) -> String {
    let Some(a) = s.append(&b.scenario) else {
        return String::new();
    };
    if a.fsync == "never" {
        return explain_never(a, b);
    }
    let cpu = s
        .breakdown
        .cpu
        .iter()
        .find(|c| c.batch_bytes == a.batch_bytes);
    let fair = s
        .checks
        .iter()
        .find(|c| c.fair && c.scenario == a.name && c.what == "throughput");
    let mut out = format!("- **{}**: ", a.title);
    if let Some(c) = fair {
        let _ = write!(
            out,
            "{:.0} MB/s in the main run, {:.1}% of {} ({}). ",
            a.mb_per_s,
            c.fraction * 100.0,
            c.reference_label,
            if c.pass { "pass" } else { "short" }
        );
    }
    let _ = write!(
        out,
        "On timed storage ({:.0} MB/s) group commit put {:.2} batches in each log write \
         ({:.0} KiB) and {:.2} behind each fdatasync. Log I/O was in flight {:.0}% of the \
         window: a write took {} µs and an fdatasync {} µs on average",
        b.mb_per_s,
        b.batches_per_write,
        b.log_write.bytes_mean / 1024.0,
        b.batches_per_sync,
        b.log_io_busy_fraction * 100.0,
        format_us(b.log_write.us_mean),
        format_us(b.log_sync.us_mean),
    );
    if let Some(f) = s.fsync_probe(a.batch_bytes) {
        let _ = write!(
            out,
            " (the raw fdatasync probe: {} µs mean, alone)",
            format_us(f.latency.mean_us)
        );
    }
    let idle = (1.0 - b.log_io_busy_fraction).max(0.0);
    if idle >= 0.05 {
        let _ = write!(
            out,
            ". For the other {:.0}% no log I/O of keel's was in flight",
            idle * 100.0
        );
    } else {
        out.push_str(". Some log I/O was always in flight, so the time is in the I/O itself");
    }
    if let Some(c) = cpu {
        let _ = write!(out, "; {}", cpu_words(c, b, a.partitions));
    }
    out.push_str(".\n");
    out
}

/// With fsync never the only fdatasyncs are those of segment rolls, which make a whole
/// unsynced segment durable while every appender waits.
fn explain_never(a: &AppendFigures, b: &IoBreakdown) -> String {
    format!(
        "- **{}**: {:.0} MB/s in the main run, append p50 {} µs, p99.9 {} µs, max {} µs. On \
         timed storage the log saw {} fdatasyncs (segment rolls: `finish` syncs the segment it \
         closes), up to {} µs each, and {} other operations (opening the next segment, the \
         producer snapshot, directory syncs, retention's deletions) of up to {} µs{}; a roll \
         runs inside a flush, so every appender of the partition waits for it.\n",
        a.title,
        a.mb_per_s,
        format_us(a.latency.p50_us),
        format_us(a.latency.p99_9_us),
        format_us(a.latency.max_us),
        b.log_sync.count,
        format_us(b.log_sync.us_max),
        b.other_io.count,
        format_us(b.other_io.us_max),
        b.slowest_other
            .as_deref()
            .map_or_else(String::new, |o| format!(" (the slowest: {o})")),
    )
}

fn cpu_words(c: &CpuPieces, b: &IoBreakdown, partitions: usize) -> String {
    // Each partition runs its own flush cycle: write, then fdatasync.
    let syncs_per_partition_s = b.log_sync.per_s / partitions.max(1) as f64;
    let cycle_us = 1e6 / syncs_per_partition_s.max(f64::MIN_POSITIVE);
    let cpu_per_cycle_us = c.total_us() * b.batches_per_sync;
    format!(
        "the CPU work of a batch is {} µs (CRC {} µs, write buffer {}, copy into it {}), \
         so {} µs for the {:.2} batches of one partition's flush cycle of {} µs ({:.0}% of it)",
        format_us(c.total_us()),
        format_us(c.validate_us),
        format_us(c.dma_alloc_us),
        format_us(c.dma_copy_us),
        format_us(cpu_per_cycle_us),
        b.batches_per_sync,
        format_us(cycle_us),
        cpu_per_cycle_us / cycle_us.max(f64::MIN_POSITIVE) * 100.0,
    )
}
