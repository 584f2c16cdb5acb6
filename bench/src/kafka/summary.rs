//! What a sweep measured, as written to `summary.json`, and the checks against the issue's
//! targets, computed from it (so `keel-bench report DIR` recomputes them from the raw data).

use serde::{Deserialize, Serialize};

use super::broker::SystemSpec;
use super::run::RunSummary;
use super::workload::Workload;
use crate::limits::LimitsReport;
use crate::report::RunIdentity;

/// Marks a `summary.json` as a Kafka sweep's (the engine report has none).
pub const KIND: &str = "kafka-sweep";

/// Every figure of one sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepSummary {
    #[serde(flatten)]
    pub identity: RunIdentity,
    /// 1, 5 and 15 minute load averages before and after the sweep.
    pub load_average_start: Option<[f64; 3]>,
    pub load_average_end: Option<[f64; 3]>,
    pub workload: Workload,
    /// Fractions of the maximum rate the fixed-rate runs use.
    pub fractions: Vec<f64>,
    pub limits: LimitsReport,
    /// The raw fdatasync histogram file (µs), if measured.
    pub fsync_histogram_file: Option<String>,
    pub systems: Vec<SystemResult>,
    /// One rate every system also runs at, for a like-for-like latency comparison: half the
    /// lowest maximum rate among the systems (messages/s).
    pub same_rate: Option<u64>,
}

/// One system's runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SystemResult {
    pub system: SystemSpec,
    pub max: RunSummary,
    /// Fixed-rate runs, in the order of `fractions`.
    pub fixed: Vec<RunSummary>,
    /// The run at the rate every system is measured at (`SweepSummary::same_rate`).
    pub same_rate: Option<RunSummary>,
}

/// One target of the issue, checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    pub what: String,
    pub figure: String,
    pub target: String,
    pub pass: bool,
}

impl SweepSummary {
    /// The system named `name`.
    pub fn system(&self, name: &str) -> Option<&SystemResult> {
        self.systems.iter().find(|s| s.system.name == name)
    }

    /// The raw sequential write limit at `block_bytes`, queue depth 1, with or without an
    /// fdatasync per block (MB/s).
    pub fn raw_write_mb_per_s(&self, block_bytes: usize, fsync_each: bool) -> Option<f64> {
        self.limits
            .disk_write
            .iter()
            .find(|w| {
                w.block_bytes == block_bytes && w.queue_depth == 1 && w.fsync_each == fsync_each
            })
            .map(|w| w.mb_per_s)
    }

    /// The write size the limits are taken at: the workload's batch, rounded up to 4 KiB.
    pub fn write_bytes(&self) -> usize {
        self.workload.batch_bytes.div_ceil(4096) * 4096
    }

    /// The targets for the system called `keel`, against the limits and the peer
    /// ([`SweepSummary::peer`]) of the same run.
    pub fn checks(&self) -> Vec<Check> {
        let Some(keel) = self.system("keel") else {
            return Vec::new();
        };
        let mut checks = Vec::new();
        let write_bytes = self.write_bytes();
        if let Some(raw) = self.raw_write_mb_per_s(write_bytes, false) {
            let fraction = keel.max.acked_mb_per_s / raw;
            checks.push(Check {
                what: format!(
                    "max throughput vs raw O_DIRECT write, {} KiB QD1",
                    write_bytes / 1024
                ),
                figure: format!(
                    "{:.1} MB/s of {raw:.1} MB/s = {:.0}%",
                    keel.max.acked_mb_per_s,
                    fraction * 100.0
                ),
                target: "at least 80%".to_owned(),
                pass: fraction >= 0.8,
            });
        }
        let half = self.fixed_at(keel, 0.5);
        if let (Some(half), Some(fsync)) = (half, &self.limits.fsync_latency) {
            let ratio = half.produce_latency.p99_us / fsync.latency.p99_us;
            checks.push(Check {
                what: "produce p99 at 50% of max vs raw fdatasync p99".to_owned(),
                figure: format!(
                    "{:.2} ms vs {:.2} ms = {ratio:.1}x",
                    half.produce_latency.p99_us / 1000.0,
                    fsync.latency.p99_us / 1000.0
                ),
                target: "at most 1.5x".to_owned(),
                pass: ratio <= 1.5,
            });
        }
        if let Some(half) = half {
            checks.push(Check {
                what: "produce p99.9 at 50% of max".to_owned(),
                figure: format!("{:.2} ms", half.produce_latency.p99_9_us / 1000.0),
                target: "at most 10 ms".to_owned(),
                pass: half.produce_latency.p99_9_us <= 10_000.0,
            });
            if let Some(e2e) = &half.e2e_latency {
                checks.push(Check {
                    what: "end-to-end p99 at 50% of max".to_owned(),
                    figure: format!("{:.2} ms", e2e.p99_us / 1000.0),
                    target: "at most 10 ms".to_owned(),
                    pass: e2e.p99_us <= 10_000.0,
                });
            }
        }
        if let Some(peer) = self.peer() {
            let ratio = keel.max.acked_mb_per_s / peer.max.acked_mb_per_s.max(1e-9);
            checks.push(Check {
                what: format!("max throughput vs {}", peer.system.name),
                figure: format!(
                    "{:.1} vs {:.1} MB/s = {ratio:.1}x",
                    keel.max.acked_mb_per_s, peer.max.acked_mb_per_s
                ),
                target: "at least 2x".to_owned(),
                pass: ratio >= 2.0,
            });
            if let Some((rate, keel_run, peer_run)) = self.same_rate_pair(keel, peer) {
                let ratio = keel_run.produce_latency.p99_9_us / peer_run.produce_latency.p99_9_us;
                checks.push(Check {
                    what: format!(
                        "produce p99.9 vs {} at the same rate ({rate} msg/s)",
                        peer.system.name
                    ),
                    figure: format!(
                        "{:.2} vs {:.2} ms = {:.2}x",
                        keel_run.produce_latency.p99_9_us / 1000.0,
                        peer_run.produce_latency.p99_9_us / 1000.0,
                        ratio
                    ),
                    target: "at most 0.2x".to_owned(),
                    pass: ratio <= 0.2,
                });
            }
        }
        checks
    }

    /// The peer: the first system whose name does not start with `keel` (other keel settings,
    /// such as `keel-nosync`, are not peers).
    pub fn peer(&self) -> Option<&SystemResult> {
        self.systems
            .iter()
            .find(|s| !s.system.name.starts_with("keel"))
    }

    /// The fixed-rate run at `fraction` of the maximum.
    pub fn fixed_at<'a>(&self, system: &'a SystemResult, fraction: f64) -> Option<&'a RunSummary> {
        self.fractions
            .iter()
            .position(|f| (f - fraction).abs() < 1e-9)
            .and_then(|i| system.fixed.get(i))
    }

    /// keel's and the peer's runs at the common rate.
    fn same_rate_pair<'a>(
        &self,
        keel: &'a SystemResult,
        peer: &'a SystemResult,
    ) -> Option<(u64, &'a RunSummary, &'a RunSummary)> {
        Some((
            self.same_rate?,
            keel.same_rate.as_ref()?,
            peer.same_rate.as_ref()?,
        ))
    }
}
