//! `report.md` of a sweep, built from its summary alone.

use std::fmt::Write as _;

use super::run::RunSummary;
use super::summary::{SweepSummary, SystemResult};
use crate::report::{format_us, RunIdentity};
use crate::units::format_bytes_human;

/// The whole page. `plots` are (title, file) pairs; `notes` is the hand-written analysis.
pub fn report_markdown(
    summary: &SweepSummary,
    plots: &[(String, String)],
    notes: Option<&str>,
) -> String {
    let names: Vec<&str> = summary
        .systems
        .iter()
        .map(|s| s.system.name.as_str())
        .collect();
    let mut page = format!("# keel-bench sweep: {}\n\n", names.join(" vs "));
    page.push_str(&header(summary));
    page.push_str(&checks(summary));
    page.push_str(&maxima(summary));
    page.push_str(&fixed_runs(summary));
    page.push_str(&plots_markdown(plots));
    page.push_str(&cost(summary));
    page.push_str(&notes_markdown(notes));
    let limits = summary.limits.to_markdown(&[]);
    page.push_str("## Machine limits (measured in this run)\n\n");
    for line in limits.lines().skip(1) {
        if let Some(rest) = line.strip_prefix("## ") {
            let _ = writeln!(page, "### {rest}");
        } else {
            let _ = writeln!(page, "{line}");
        }
    }
    page
}

/// A "Plots" section: each (title, file) as a heading and its image.
pub fn plots_markdown(plots: &[(String, String)]) -> String {
    let mut text = String::from("## Plots\n\n");
    for (title, file) in plots {
        let _ = writeln!(text, "### {title}\n\n![{title}]({file})\n");
    }
    text
}

/// A "Notes" section with the hand-written analysis, when there is one.
pub fn notes_markdown(notes: Option<&str>) -> String {
    notes.map_or_else(String::new, |notes| {
        format!("## Notes\n\n{}\n\n", notes.trim())
    })
}

/// The command, the code and the machine of a run: the opening lines of every Kafka report
/// (sweep and soak).
pub fn run_header(identity: &RunIdentity) -> String {
    let RunIdentity {
        command,
        git,
        started_at_unix_s,
        machine: m,
        ..
    } = identity;
    let started_at_unix_s = *started_at_unix_s;
    let mut text = String::new();
    let command: Vec<String> = command
        .iter()
        .map(|a| crate::report::shell_quote(a))
        .collect();
    let _ = writeln!(
        text,
        "Command (from the repository root):\n\n```sh\n{}\n```\n",
        command.join(" ")
    );
    let commit = git.commit.as_deref().unwrap_or("unknown");
    let _ = writeln!(
        text,
        "Code: `{commit}`{}. Started {} (Unix {}).\n",
        if git.dirty_paths.is_empty() {
            String::new()
        } else {
            format!(
                " with {} uncommitted path(s): {}",
                git.dirty_paths.len(),
                git.dirty_paths.join(", ")
            )
        },
        crate::report::utc_date(started_at_unix_s),
        started_at_unix_s
    );
    let (device, fs) = m.storage.mount.as_ref().map_or(("?", "?"), |mount| {
        (mount.device.as_str(), mount.fs_type.as_str())
    });
    let _ = writeln!(
        text,
        "Machine `{}`: {}, {} CPUs ({} available to the bench), {:.1} GiB, {} kernel {}, \
         data on `{device}` ({fs}).\n",
        m.hostname,
        m.cpu_model.as_deref().unwrap_or("unknown CPU"),
        m.cpu_logical_count,
        m.cpu_available_count,
        m.memory_total_bytes
            .map_or(0.0, |b| b as f64 / f64::from(1 << 30)),
        m.os.as_deref().unwrap_or("Linux"),
        m.kernel_release,
    );
    text
}

fn header(summary: &SweepSummary) -> String {
    let w = &summary.workload;
    let mut text = run_header(&summary.identity);
    let load = |l: Option<[f64; 3]>| {
        l.map_or_else(
            || "?".to_owned(),
            |[a, b, c]| format!("{a:.2} {b:.2} {c:.2}"),
        )
    };
    let _ = writeln!(
        text,
        "Load average (1, 5, 15 min) at start: {}; at end: {}. The load generator shares the \
         machine's cores with the broker under test (see \"Load generator cost\").\n",
        load(summary.load_average_start),
        load(summary.load_average_end)
    );
    let _ = writeln!(
        text,
        "Workload `{}`: {} topic(s) x {} partitions, {} producers, {} consumers (assigned \
         partitions), {} messages, keys {}, batches up to {} per partition, linger {} ms, \
         {} requests in flight per producer, acks={}, compression {}, {} s measured after {} s \
         of warm-up per run. Every run starts the broker afresh on an empty data directory.\n",
        w.name,
        w.topics,
        w.partitions,
        w.producers,
        w.consumers,
        format_bytes_human(w.message_bytes),
        String::from(w.keys),
        format_bytes_human(w.batch_bytes),
        w.linger_ms,
        w.in_flight_max,
        w.acks,
        w.compression,
        w.duration_s,
        w.warmup_s
    );
    text.push_str(
        "Latency is produce (send to acknowledgement) and end-to-end (send to consumed), \
         counted from each message's intended send time on the open-loop schedule \
         (coordinated-omission corrected); the uncorrected figures count from when its request \
         was built. MB = 10^6 bytes of message values.\n\n",
    );
    text
}

fn checks(summary: &SweepSummary) -> String {
    let checks = summary.checks();
    if checks.is_empty() {
        return String::new();
    }
    let mut text = String::from(
        "## Targets for keel (issue 6), as measured in this run\n\n\
         | target | measured | wanted | |\n|---|---|---|---|\n",
    );
    for check in checks {
        let _ = writeln!(
            text,
            "| {} | {} | {} | {} |",
            check.what,
            check.figure,
            check.target,
            if check.pass { "met" } else { "short" }
        );
    }
    text.push('\n');
    text
}

fn maxima(summary: &SweepSummary) -> String {
    let write_bytes = summary.write_bytes();
    let raw = summary.raw_write_mb_per_s(write_bytes, false);
    let raw_sync = summary.raw_write_mb_per_s(write_bytes, true);
    let size = format_bytes_human(write_bytes);
    let mut text = format!(
        "## Maximum rate\n\nEach producer sends a request whenever it has fewer than \
         `in_flight_max` unanswered, so the broker sets the pace. Raw limits of this run at the \
         batch size ({size}, QD1): O_DIRECT write {}, write + fdatasync per block {}.\n\n\
         | system | msg/s | MB/s | of raw write | of raw write+fdatasync | produce p50 | p99 | \
         p99.9 | errors |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        raw.map_or("not measured".to_owned(), |v| format!("{v:.0} MB/s")),
        raw_sync.map_or("not measured".to_owned(), |v| format!("{v:.0} MB/s")),
    );
    for system in &summary.systems {
        let run = &system.max;
        let fraction = |limit: Option<f64>| {
            limit.map_or("?".to_owned(), |l| {
                format!("{:.0}%", run.acked_mb_per_s / l * 100.0)
            })
        };
        let _ = writeln!(
            text,
            "| {} | {:.0} | {:.1} | {} | {} | {} | {} | {} | {} |",
            system.system.name,
            run.acked_msg_per_s,
            run.acked_mb_per_s,
            fraction(raw),
            fraction(raw_sync),
            ms(run.produce_latency.p50_us),
            ms(run.produce_latency.p99_us),
            ms(run.produce_latency.p99_9_us),
            errors(run),
        );
    }
    text.push('\n');
    text
}

fn ms(us: f64) -> String {
    format!("{} ms", format_us(us / 1000.0))
}

fn errors(run: &RunSummary) -> String {
    match &run.first_error {
        Some(first) => format!("{} ({first})", run.produce_errors),
        None => run.produce_errors.to_string(),
    }
}

fn fixed_runs(summary: &SweepSummary) -> String {
    let mut text = String::from(
        "## Fixed-rate runs\n\nLatencies in ms; produce and end-to-end from the intended send \
         time, \"raw p99\" from the actual send. \"late\" counts messages the schedule had due \
         in the window that were never sent: the broker could not keep up.\n\n",
    );
    for system in &summary.systems {
        let _ = writeln!(text, "### {}\n", system.system.name);
        text.push_str(
            "| run | target msg/s | acked msg/s | MB/s | p50 | p99 | p99.9 | max | raw p99 | \
             e2e p50 | e2e p99 | e2e p99.9 | late | errors |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for (run, name) in named_runs(summary, system) {
            let p = &run.produce_latency;
            let e2e = |pick: fn(&crate::histogram::LatencySummary) -> f64| {
                run.e2e_latency
                    .as_ref()
                    .map_or("-".to_owned(), |e| format_us(pick(e) / 1000.0))
            };
            let _ = writeln!(
                text,
                "| {name} | {} | {:.0} | {:.1} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                run.target_rate,
                run.acked_msg_per_s,
                run.acked_mb_per_s,
                format_us(p.p50_us / 1000.0),
                format_us(p.p99_us / 1000.0),
                format_us(p.p99_9_us / 1000.0),
                format_us(p.max_us / 1000.0),
                format_us(run.produce_latency_uncorrected.p99_us / 1000.0),
                e2e(|e| e.p50_us),
                e2e(|e| e.p99_us),
                e2e(|e| e.p99_9_us),
                run.unsent_at_end,
                errors(run),
            );
        }
        text.push('\n');
    }
    text
}

fn named_runs<'a>(
    summary: &SweepSummary,
    system: &'a SystemResult,
) -> Vec<(&'a RunSummary, String)> {
    let mut runs: Vec<(&RunSummary, String)> = system
        .fixed
        .iter()
        .zip(&summary.fractions)
        .map(|(run, f)| (run, format!("{:.0}% of max", f * 100.0)))
        .collect();
    if let Some(run) = &system.same_rate {
        runs.push((run, "same rate as all".to_owned()));
    }
    runs
}

fn cost(summary: &SweepSummary) -> String {
    let mut text = String::from(
        "## Load generator cost\n\nCPU seconds per second of the measured window (1.0 = one \
         core busy), of keel-bench itself and of the broker process. The machine's cores are \
         shared by both, so the load generator's share is capacity the broker did not have.\n\n\
         | system | run | keel-bench cores | broker cores |\n|---|---|---:|---:|\n",
    );
    for system in &summary.systems {
        let mut runs = vec![(&system.max, "max".to_owned())];
        runs.extend(named_runs(summary, system));
        for (run, name) in runs {
            let _ = writeln!(
                text,
                "| {} | {name} | {:.2} | {} |",
                system.system.name,
                run.bench_cpu_s / run.window_s.max(1e-9),
                run.broker_cpu_s.map_or("?".to_owned(), |c| format!(
                    "{:.2}",
                    c / run.window_s.max(1e-9)
                )),
            );
        }
    }
    text.push('\n');
    text
}
