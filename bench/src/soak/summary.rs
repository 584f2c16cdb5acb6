//! The soak's figures and its flatness checks.
//!
//! After `report.warmup_s` the rest of the run is cut into three equal thirds by time. Flat
//! means the last third looks like the first: no higher peak RSS or open-file count (beyond a
//! stated slack), no higher median of the per-interval p99 latencies, retention still
//! deleting segments and the disk use bounded, the target rate still met; and no errors
//! anywhere. A leak or a queue that grows shows up as a last third above the first, whatever
//! the machine's noise does to single intervals.

use serde::{Deserialize, Serialize};

use super::config::SoakConfig;
use super::csv::{IntervalRow, Sample};
use super::load::{AdminFigures, GroupFigures};
use crate::kafka::run::RunSummary;
use crate::report::RunIdentity;

/// `kind` of a soak's summary.json, which `keel-bench report` looks for.
pub const KIND: &str = "keel-bench soak";

/// summary.json of a soak.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SoakSummary {
    #[serde(flatten)]
    pub identity: RunIdentity,
    pub config: SoakConfig,
    /// The command that started the broker.
    pub broker_command: String,
    /// Seconds from the start of load to the last sample.
    pub elapsed_s: f64,
    /// The producers' and consumers' figures over the whole run; `None` when it failed.
    pub run: Option<RunSummary>,
    /// Why the soak ended early, if it did.
    pub failure: Option<String>,
    pub group: GroupFigures,
    pub admin: AdminFigures,
    pub broker_log: LogFindings,
    pub analysis: Analysis,
}

/// What the broker's own log said.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LogFindings {
    pub lines: u64,
    /// WARN and ERROR lines, except the known-harmless iopoll notice of every DmaFile open on
    /// this kind of disk.
    pub warnings: u64,
    pub errors: u64,
    /// The first few of them.
    pub first: Vec<String>,
}

/// One third of the checked span.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Third {
    pub from_s: f64,
    pub to_s: f64,
    pub rss_peak_bytes: f64,
    pub open_files_min: f64,
    pub open_files_max: f64,
    pub produce_p99_median_us: f64,
    pub produce_p99_max_us: f64,
    pub e2e_p99_median_us: f64,
    pub e2e_p99_max_us: f64,
    /// Median over the third's intervals of the acknowledged messages per second.
    pub acked_msg_per_s_median: f64,
    pub segments_deleted: f64,
    pub log_bytes_peak: f64,
    pub load1_mean: f64,
}

/// One flatness check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    pub what: String,
    pub criterion: String,
    pub figure: String,
    pub pass: bool,
}

/// The thirds, the checks, and the verdict.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    pub thirds: Vec<Third>,
    pub rss_peak_bytes: f64,
    pub open_files_min: f64,
    pub open_files_max: f64,
    pub segments_deleted: f64,
    pub load1_max: f64,
    pub checks: Vec<Check>,
    pub flat: bool,
}

/// Everything [`analyze`] looks at.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    pub config: &'a SoakConfig,
    pub samples: &'a [Sample],
    pub intervals: &'a [IntervalRow],
    pub run: Option<&'a RunSummary>,
    pub failure: Option<&'a str>,
    pub group: &'a GroupFigures,
    pub admin: &'a AdminFigures,
}

const MIB: f64 = (1u64 << 20) as f64;

/// The median of `values` (0 when empty).
fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len() % 2 == 1 {
        values[middle]
    } else {
        (values[middle - 1] + values[middle]) / 2.0
    }
}

/// The largest of `values` (0 when empty).
fn max_of(values: impl Iterator<Item = f64>) -> f64 {
    values.fold(0.0, f64::max)
}

/// The smallest of `values` (0 when empty).
fn min_of(values: impl Iterator<Item = f64>) -> f64 {
    values
        .fold(None, |low: Option<f64>, v| {
            Some(low.map_or(v, |low| low.min(v)))
        })
        .unwrap_or(0.0)
}

/// Figures of the samples and intervals inside `[from_s, to_s)` (intervals by their middle).
fn third(inputs: &Inputs<'_>, from_s: f64, to_s: f64) -> Third {
    let inside = |t: f64| (from_s..to_s).contains(&t);
    let samples: Vec<&Sample> = inputs.samples.iter().filter(|s| inside(s.t_s)).collect();
    let intervals: Vec<&IntervalRow> = inputs
        .intervals
        .iter()
        .filter(|i| inside((i.t_start_s + i.t_end_s) / 2.0))
        .collect();
    // Deletions in the third: the count at its last sample less the count before it.
    let deleted_before = inputs
        .samples
        .iter()
        .take_while(|s| s.t_s < from_s)
        .last()
        .map_or(0.0, |s| s.segments_deleted);
    let deleted_at_end = samples
        .last()
        .map_or(deleted_before, |s| s.segments_deleted);
    let p99s =
        |pick: fn(&IntervalRow) -> f64| -> Vec<f64> { intervals.iter().map(|i| pick(i)).collect() };
    Third {
        from_s,
        to_s,
        rss_peak_bytes: max_of(samples.iter().map(|s| s.rss_bytes)),
        open_files_min: min_of(samples.iter().map(|s| s.open_files)),
        open_files_max: max_of(samples.iter().map(|s| s.open_files)),
        produce_p99_median_us: median(p99s(|i| i.produce_p99_us)),
        produce_p99_max_us: max_of(p99s(|i| i.produce_p99_us).into_iter()),
        e2e_p99_median_us: median(p99s(|i| i.e2e_p99_us)),
        e2e_p99_max_us: max_of(p99s(|i| i.e2e_p99_us).into_iter()),
        acked_msg_per_s_median: median(
            intervals
                .iter()
                .map(|i| i.produce_count / (i.t_end_s - i.t_start_s).max(1e-9))
                .collect(),
        ),
        segments_deleted: deleted_at_end - deleted_before,
        log_bytes_peak: max_of(samples.iter().map(|s| s.log_bytes)),
        load1_mean: samples.iter().map(|s| s.load1).sum::<f64>() / samples.len().max(1) as f64,
    }
}

/// "a grew to b": the figure of a first-third-against-last-third check.
fn growth(first: f64, last: f64, unit: &str, scale: f64) -> String {
    format!("{:.1} {unit} -> {:.1} {unit}", first / scale, last / scale)
}

/// The thirds and every check.
pub fn analyze(inputs: &Inputs<'_>) -> Analysis {
    let c = inputs.config;
    let r = &c.report;
    let end_s = inputs.samples.last().map_or(0.0, |s| s.t_s).min(c.load_s());
    let span = (end_s - r.warmup_s).max(0.0) / 3.0;
    let thirds: Vec<Third> = (0..3)
        .map(|k| {
            let from = r.warmup_s + span * f64::from(k);
            // The last third includes the final sample.
            let to = if k == 2 { end_s + 1e-6 } else { from + span };
            third(inputs, from, to)
        })
        .collect();
    let mut checks = Checks::default();
    memory_and_files(inputs, &thirds, &mut checks);
    latency_trend(inputs, &thirds, &mut checks);
    retention_and_rate(inputs, &thirds, &mut checks);
    errors_and_load(inputs, &mut checks);
    let checks = checks.0;
    let flat = checks.iter().all(|c| c.pass);
    Analysis {
        rss_peak_bytes: max_of(inputs.samples.iter().map(|s| s.rss_bytes)),
        open_files_min: min_of(inputs.samples.iter().map(|s| s.open_files)),
        open_files_max: max_of(inputs.samples.iter().map(|s| s.open_files)),
        segments_deleted: inputs.samples.last().map_or(0.0, |s| s.segments_deleted),
        load1_max: max_of(inputs.samples.iter().map(|s| s.load1)),
        thirds,
        checks,
        flat,
    }
}

/// The checks as they are added.
#[derive(Debug, Default)]
struct Checks(Vec<Check>);

impl Checks {
    fn add(&mut self, what: &str, criterion: String, figure: String, pass: bool) {
        self.0.push(Check {
            what: what.to_owned(),
            criterion,
            figure,
            pass,
        });
    }
}

/// Peak RSS and open files: the last third against the first, and a hard bound.
fn memory_and_files(inputs: &Inputs<'_>, thirds: &[Third], checks: &mut Checks) {
    let c = inputs.config;
    let r = &c.report;
    let (first, last) = (&thirds[0], &thirds[2]);
    let rss_slack = (first.rss_peak_bytes * r.rss_growth_fraction).max(r.rss_growth_bytes as f64);
    checks.add(
        "peak RSS, first third -> last third",
        format!(
            "last <= first + max({:.0}%, {:.0} MiB)",
            r.rss_growth_fraction * 100.0,
            r.rss_growth_bytes as f64 / MIB
        ),
        growth(first.rss_peak_bytes, last.rss_peak_bytes, "MiB", MIB),
        last.rss_peak_bytes <= first.rss_peak_bytes + rss_slack,
    );
    checks.add(
        "most open files, first third -> last third",
        format!("last <= first + {}", r.open_files_growth),
        format!("{:.0} -> {:.0}", first.open_files_max, last.open_files_max),
        last.open_files_max <= first.open_files_max + r.open_files_growth as f64,
    );
    let fds_max = max_of(inputs.samples.iter().map(|s| s.open_files));
    checks.add(
        "open files, every sample",
        format!("<= {}", r.open_files_max),
        format!("at most {fds_max:.0}"),
        fds_max <= r.open_files_max as f64,
    );
}

/// The median per-interval p99, produce and end-to-end: the last third against the first.
fn latency_trend(inputs: &Inputs<'_>, thirds: &[Third], checks: &mut Checks) {
    let c = inputs.config;
    let r = &c.report;
    let (first, last) = (&thirds[0], &thirds[2]);
    let p99_slack = |first_us: f64| (first_us * r.p99_growth_fraction).max(r.p99_growth_ms * 1e3);
    let p99_criterion = format!(
        "last <= first + max({:.0}%, {} ms)",
        r.p99_growth_fraction * 100.0,
        r.p99_growth_ms
    );
    for (what, a, b) in [
        (
            "median interval p99, produce",
            first.produce_p99_median_us,
            last.produce_p99_median_us,
        ),
        (
            "median interval p99, end-to-end",
            first.e2e_p99_median_us,
            last.e2e_p99_median_us,
        ),
    ] {
        checks.add(
            what,
            p99_criterion.clone(),
            growth(a, b, "ms", 1e3),
            b > 0.0 && b <= a + p99_slack(a),
        );
    }
}

/// Retention kept deleting, the disk stayed bounded, the target rate was met.
fn retention_and_rate(inputs: &Inputs<'_>, thirds: &[Third], checks: &mut Checks) {
    let c = inputs.config;
    let r = &c.report;
    let (first, last) = (&thirds[0], &thirds[2]);
    let deleted: Vec<String> = thirds
        .iter()
        .map(|t| format!("{:.0}", t.segments_deleted))
        .collect();
    checks.add(
        "segments deleted by retention, per third",
        "> 0 in every third".to_owned(),
        deleted.join(", "),
        thirds.iter().all(|t| t.segments_deleted > 0.0),
    );
    let disk_slack = f64::from(c.workload.partitions) * c.broker.segment_bytes_max as f64;
    checks.add(
        "soak topic on disk, first third -> last third",
        "last <= first + one segment per partition".to_owned(),
        growth(first.log_bytes_peak, last.log_bytes_peak, "MiB", MIB),
        last.log_bytes_peak <= first.log_bytes_peak + disk_slack,
    );
    let target = c.workload.rate as f64;
    checks.add(
        "acknowledged rate, last third (median interval)",
        format!(
            ">= {:.0}% of {target:.0} msg/s",
            r.rate_fraction_min * 100.0
        ),
        format!("{:.0} msg/s", last.acked_msg_per_s_median),
        last.acked_msg_per_s_median >= r.rate_fraction_min * target,
    );
}

/// No errors anywhere, and the group and admin load really ran.
fn errors_and_load(inputs: &Inputs<'_>, checks: &mut Checks) {
    let c = inputs.config;
    let (errors, error_figure) = error_figure(inputs);
    checks.add(
        "errors (produce, fetch, group, admin, run)",
        "none".to_owned(),
        error_figure,
        errors == 0,
    );
    let load_ran = inputs.admin.cycles > 0
        && (c.groups.members == 0 || (inputs.group.leaves > 0 && inputs.group.generation_max >= 2));
    checks.add(
        "group and admin load ran",
        "admin cycles > 0; members left and the group rebalanced".to_owned(),
        format!(
            "{} admin cycles, {} leaves, generation {}",
            inputs.admin.cycles, inputs.group.leaves, inputs.group.generation_max
        ),
        load_ran,
    );
}

/// How many errors there were, and what they were.
fn error_figure(inputs: &Inputs<'_>) -> (u64, String) {
    let produce = inputs.run.map_or(0, |r| r.produce_errors);
    let run_error = inputs.run.and_then(|r| r.first_error.clone());
    let count = produce
        + u64::from(run_error.is_some())
        + u64::from(inputs.failure.is_some())
        + inputs.group.errors
        + inputs.admin.errors;
    if count == 0 {
        return (0, "none".to_owned());
    }
    let mut parts = vec![format!(
        "produce {produce}, group {}, admin {}",
        inputs.group.errors, inputs.admin.errors
    )];
    parts.extend(inputs.failure.map(|f| format!("failure: {f}")));
    parts.extend(run_error.map(|e| format!("first produce/fetch error: {e}")));
    parts.extend(
        inputs
            .group
            .first_error
            .iter()
            .map(|e| format!("first group error: {e}")),
    );
    parts.extend(
        inputs
            .admin
            .first_error
            .iter()
            .map(|e| format!("first admin error: {e}")),
    );
    (count, parts.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(vec![]), 0.0);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
