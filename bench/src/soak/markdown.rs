//! `report.md` of a soak, built from its summary alone: the verdict and its checks, the
//! figures, the three thirds, the whole run's latency, the plots, the broker's log.

use std::fmt::Write as _;

use super::summary::{SoakSummary, Third};
use crate::histogram::LatencySummary;
use crate::kafka::markdown::{notes_markdown, plots_markdown, run_header};
use crate::report::percentile_table_markdown;

const MIB: f64 = (1u64 << 20) as f64;

fn ms(us: f64) -> String {
    format!("{:.1} ms", us / 1e3)
}

/// The whole page.
pub fn report_markdown(
    summary: &SoakSummary,
    plots: &[(String, String)],
    notes: Option<&str>,
) -> String {
    let a = &summary.analysis;
    let seconds = summary.config.workload.duration_s;
    let length = if seconds >= 120.0 {
        format!("{:.0} minutes", seconds / 60.0)
    } else {
        format!("{seconds:.0} seconds")
    };
    let mut page = format!("# keel-bench soak: {length} of mixed load\n\n");
    page.push_str(&run_header(&summary.identity));
    page.push_str(&load_description(summary));
    let _ = writeln!(
        page,
        "## Verdict: {}\n",
        if a.flat { "flat" } else { "NOT flat" }
    );
    let _ = writeln!(
        page,
        "The first {:.0} s are warm-up; the rest is cut into three equal thirds, and each check \
         compares the last third with the first.\n",
        summary.config.report.warmup_s
    );
    page.push_str("| check | criterion | figure | |\n|---|---|---|---|\n");
    for check in &a.checks {
        let _ = writeln!(
            page,
            "| {} | {} | {} | {} |",
            check.what,
            check.criterion,
            check.figure.replace('|', "\\|"),
            if check.pass { "pass" } else { "**FAIL**" }
        );
    }
    page.push('\n');
    page.push_str(&figures(summary));
    page.push_str(&thirds_table(&a.thirds));
    if let Some(run) = &summary.run {
        page.push_str("## Latency over the whole run\n\n");
        let mut rows: Vec<(&str, &LatencySummary)> = vec![
            ("produce (from intended send)", &run.produce_latency),
            (
                "produce (from actual send)",
                &run.produce_latency_uncorrected,
            ),
        ];
        if let Some(e2e) = &run.e2e_latency {
            rows.push(("end-to-end (from intended send)", e2e));
        }
        page.push_str("Microseconds.\n\n");
        page.push_str(&percentile_table_markdown(&rows));
        page.push('\n');
    }
    page.push_str(&plots_markdown(plots));
    page.push_str(&broker_log(summary));
    page.push_str(&notes_markdown(notes));
    page.push_str(
        "## Raw data\n\n`samples.csv` (the broker every second), `intervals.csv` (per interval), \
         `latency.hlog` (HDR interval log, tags `produce`, `e2e`, `admin`, µs; readable with \
         HdrHistogram's log tools), `soak_*.hdr` (whole run). `keel-bench report DIR` redraws \
         this page and the plots from them.\n",
    );
    page
}

fn load_description(summary: &SoakSummary) -> String {
    let c = &summary.config;
    let (w, b, g, ad) = (&c.workload, &c.broker, &c.groups, &c.admin);
    let mut text = String::new();
    let _ = writeln!(
        text,
        "Broker: `{}` (started by the soak, stopped by its PID at the end, data directory \
         removed).\n",
        summary.broker_command
    );
    let _ = writeln!(
        text,
        "Load for {:.0} s (after {:.0} s unrecorded): {} producers at {} msg/s in all ({:.1} MB/s) \
         of {} B messages to 1 topic x {} partitions, acks={}, batches up to {} B, linger {} ms; \
         {} consumers tailing every partition (long-poll Fetch). Segments of {:.1} MiB, \
         retention {:.1} MiB per partition, checked every {} ms, fsync {}. One consumer group \
         `{}` of {} members, each living {:.0} s then leaving and joining again as a new member \
         (staggered: the group changes every {:.0} s), heartbeat every {} ms, committing the end \
         offsets of its partitions every {} ms. Admin every {} ms: create a {}-partition topic, \
         produce {} messages to each partition, list offsets, Metadata, DescribeConfigs, \
         DescribeGroups, delete the topic. Latency intervals of {:.0} s.\n",
        w.duration_s,
        w.warmup_s,
        w.producers,
        w.rate,
        w.rate as f64 * w.message_bytes as f64 / 1e6,
        w.message_bytes,
        w.partitions,
        w.acks,
        w.batch_bytes,
        w.linger_ms,
        w.consumers,
        b.segment_bytes_max as f64 / MIB,
        b.retention_bytes as f64 / MIB,
        b.retention_check_ms,
        b.fsync,
        g.group,
        g.members,
        g.member_life_s,
        g.member_life_s / f64::from(g.members.max(1)),
        g.heartbeat_ms,
        g.commit_ms,
        ad.period_ms,
        ad.partitions,
        ad.messages,
        c.report.interval_s,
    );
    text
}

fn figures(summary: &SoakSummary) -> String {
    let a = &summary.analysis;
    let (g, ad) = (&summary.group, &summary.admin);
    let mut rows: Vec<(String, String)> = vec![(
        "duration (load, then drain)".into(),
        format!("{:.0} s", summary.elapsed_s),
    )];
    if let Some(run) = &summary.run {
        let produced_mb = run.acked_messages as f64 * run.workload.message_bytes as f64 / 1e6;
        rows.push((
            "acknowledged after the run's warm-up".into(),
            format!(
                "{} messages, {produced_mb:.0} MB ({:.2} MB/s)",
                run.acked_messages, run.acked_mb_per_s
            ),
        ));
        rows.push((
            "consumed (tailing consumers)".into(),
            format!("{} messages", run.consumed_messages),
        ));
        rows.push((
            "produce errors; messages left unsent (schedule behind)".into(),
            format!("{}; {}", run.produce_errors, run.unsent_at_end),
        ));
    }
    if let Some(failure) = &summary.failure {
        rows.push(("**failure**".into(), failure.clone()));
    }
    rows.extend([
        (
            "segments deleted by retention".into(),
            format!("{:.0}", a.segments_deleted),
        ),
        (
            "group: generations, joins, syncs, leaves".into(),
            format!(
                "{}, {}, {}, {}",
                g.generation_max, g.joins, g.syncs, g.leaves
            ),
        ),
        (
            "group: heartbeats (answered rebalancing), commits (partitions), offset fetches".into(),
            format!(
                "{} ({}), {} ({}), {}",
                g.heartbeats, g.rebalances, g.commits, g.committed_partitions, g.offset_fetches
            ),
        ),
        (
            "group: requests cut short by a rebalance; errors".into(),
            format!("{}; {}", g.interrupted, g.errors),
        ),
        (
            "admin: cycles, requests, topics created/deleted; errors".into(),
            format!(
                "{}, {}, {}/{}; {}",
                ad.cycles, ad.requests, ad.topics_created, ad.topics_deleted, ad.errors
            ),
        ),
        (
            "peak RSS".into(),
            format!("{:.1} MiB", a.rss_peak_bytes / MIB),
        ),
        (
            "open files, lowest to highest".into(),
            format!("{:.0} to {:.0}", a.open_files_min, a.open_files_max),
        ),
        (
            "highest 1-minute load average".into(),
            format!("{:.1}", a.load1_max),
        ),
    ]);
    for error in [&g.first_error, &ad.first_error].into_iter().flatten() {
        rows.push(("first error".into(), error.clone()));
    }
    if let Some(error) = summary.run.as_ref().and_then(|r| r.first_error.as_ref()) {
        rows.push(("first produce/fetch error".into(), error.clone()));
    }
    let mut text = String::from("## Figures\n\n| | |\n|---|---|\n");
    for (what, figure) in rows {
        let _ = writeln!(text, "| {what} | {} |", figure.replace('|', "\\|"));
    }
    text.push('\n');
    text
}

/// How one row of the thirds table shows a third.
type ThirdFigure = fn(&Third) -> String;

fn thirds_table(thirds: &[Third]) -> String {
    let mut text =
        String::from("## The three thirds\n\n| | first | middle | last |\n|---|---:|---:|---:|\n");
    let rows: [(&str, ThirdFigure); 11] = [
        ("seconds", |t| format!("{:.0} to {:.0}", t.from_s, t.to_s)),
        ("peak RSS (MiB)", |t| {
            format!("{:.1}", t.rss_peak_bytes / MIB)
        }),
        ("open files", |t| {
            format!("{:.0} to {:.0}", t.open_files_min, t.open_files_max)
        }),
        ("produce p99, median interval", |t| {
            ms(t.produce_p99_median_us)
        }),
        ("produce p99, worst interval", |t| ms(t.produce_p99_max_us)),
        ("end-to-end p99, median interval", |t| {
            ms(t.e2e_p99_median_us)
        }),
        ("end-to-end p99, worst interval", |t| ms(t.e2e_p99_max_us)),
        ("acknowledged msg/s, median interval", |t| {
            format!("{:.0}", t.acked_msg_per_s_median)
        }),
        ("segments deleted", |t| format!("{:.0}", t.segments_deleted)),
        ("soak topic on disk, peak (MiB)", |t| {
            format!("{:.1}", t.log_bytes_peak / MIB)
        }),
        ("load average (1 min), mean", |t| {
            format!("{:.1}", t.load1_mean)
        }),
    ];
    for (what, figure) in rows {
        let _ = write!(text, "| {what} |");
        for third in thirds {
            let _ = write!(text, " {} |", figure(third));
        }
        text.push('\n');
    }
    text.push('\n');
    text
}

fn broker_log(summary: &SoakSummary) -> String {
    let log = &summary.broker_log;
    let mut text = format!(
        "## The broker's log\n\n{} lines, {} warnings and {} errors (not counting the iopoll \
         notice every DmaFile open logs on this disk).\n\n",
        log.lines, log.warnings, log.errors
    );
    if !log.first.is_empty() {
        text.push_str("```text\n");
        for line in &log.first {
            let _ = writeln!(text, "{line}");
        }
        text.push_str("```\n\n");
    }
    text
}
