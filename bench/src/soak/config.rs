//! The soak's settings file (`bench/workloads/soak-30min.toml`): the produce and fetch load as
//! a [`Workload`], the broker's retention settings, the group and admin load, and the
//! flatness criteria the report checks.

use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::kafka::workload::Workload;

/// Every setting of one soak.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SoakConfig {
    /// Producers and tailing consumers, run by `kafka::run` for the whole soak. Its
    /// `duration_s` is the soak's length.
    pub workload: Workload,
    pub broker: BrokerSettings,
    pub groups: GroupSettings,
    pub admin: AdminSettings,
    pub report: ReportSettings,
}

/// Settings of the broker the soak starts, chosen so that segments roll and retention deletes
/// them every few seconds throughout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerSettings {
    pub segment_bytes_max: u64,
    /// Per partition; older segments are deleted while a partition holds more.
    pub retention_bytes: i64,
    pub retention_check_ms: u64,
    /// Short, so that every rebalance of the soak's group completes quickly.
    pub group_initial_rebalance_delay_ms: u64,
    #[serde(default = "fsync_always")]
    pub fsync: String,
    /// Further `keel` flags, given as they are.
    #[serde(default)]
    pub extra_args: Vec<String>,
}

/// One consumer group whose members keep joining and leaving.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupSettings {
    pub group: String,
    /// Members at once; 0 runs no group load.
    pub members: u32,
    /// How long one membership lasts before the member leaves (and joins again as a new
    /// member). Members start staggered by `member_life_s / members`, so the group changes
    /// that often.
    pub member_life_s: f64,
    pub heartbeat_ms: u64,
    /// How often a member commits the end offsets of its partitions.
    pub commit_ms: u64,
    pub session_timeout_ms: i32,
}

/// A cycle of admin requests every `period_ms`: create a topic, produce to it, list its
/// offsets, Metadata, DescribeConfigs, DescribeGroups, delete the topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSettings {
    pub period_ms: u64,
    pub partitions: i32,
    /// Messages produced to each partition of each short-lived topic.
    pub messages: u32,
}

/// How the report cuts the run into intervals and what it calls flat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportSettings {
    /// Length of one latency interval (one HDR histogram each).
    pub interval_s: f64,
    /// Seconds at the start that the flatness checks ignore (caches and the first segments
    /// filling, the group forming).
    pub warmup_s: f64,
    /// The last third's peak RSS may exceed the first third's by this fraction ...
    pub rss_growth_fraction: f64,
    /// ... or by this many bytes, whichever is more.
    pub rss_growth_bytes: u64,
    /// The last third's most open files may exceed the first third's by this many.
    pub open_files_growth: u64,
    /// No sample may have more open files than this.
    pub open_files_max: u64,
    /// The median per-interval p99 of the last third may exceed the first third's by this
    /// fraction ...
    pub p99_growth_fraction: f64,
    /// ... or by this many milliseconds, whichever is more.
    pub p99_growth_ms: f64,
    /// The last third's median acknowledged rate must reach this fraction of the target.
    pub rate_fraction_min: f64,
}

fn fsync_always() -> String {
    "always".to_owned()
}

impl SoakConfig {
    /// Reads and checks a settings file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let config: Self =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        config.check()?;
        Ok(config)
    }

    /// Values that would make the soak meaningless or endless are refused.
    pub fn check(&self) -> anyhow::Result<()> {
        self.workload.check()?;
        let w = &self.workload;
        anyhow::ensure!(w.rate > 0, "a soak needs a fixed rate (workload.rate > 0)");
        anyhow::ensure!(w.consumers > 0, "a soak needs tailing consumers");
        anyhow::ensure!(w.topics == 1, "a soak's workload has one topic");
        let r = &self.report;
        anyhow::ensure!(
            r.interval_s >= 0.5 && r.interval_s <= w.duration_s,
            "report.interval_s {} must be at least 0.5 s and at most the duration",
            r.interval_s
        );
        anyhow::ensure!(
            r.warmup_s >= 0.0 && r.warmup_s + 3.0 * r.interval_s <= w.duration_s,
            "report.warmup_s {} leaves fewer than three intervals of the {} s run to check",
            r.warmup_s,
            w.duration_s
        );
        let g = &self.groups;
        anyhow::ensure!(
            g.members == 0 || (g.member_life_s > 0.0 && g.heartbeat_ms > 0 && g.commit_ms > 0),
            "groups: member_life_s, heartbeat_ms and commit_ms must be positive"
        );
        anyhow::ensure!(
            self.admin.period_ms > 0 && self.admin.partitions > 0,
            "admin: period_ms and partitions must be positive"
        );
        anyhow::ensure!(
            self.broker.segment_bytes_max > 0 && self.broker.retention_bytes > 0,
            "broker: the soak needs a segment size and a size retention"
        );
        Ok(())
    }

    /// Seconds from the start of load to its end: the workload's warm-up and its duration.
    pub fn load_s(&self) -> f64 {
        self.workload.warmup_s + self.workload.duration_s
    }

    /// The topic the producers and consumers use.
    pub fn topic(&self) -> anyhow::Result<String> {
        self.workload
            .topic_names()
            .into_iter()
            .next()
            .context("the workload has no topic")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_soak_settings_parse() -> anyhow::Result<()> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads/soak-30min.toml");
        let config = SoakConfig::load(&path)?;
        assert_eq!(config.topic()?, "bench-soak-0");
        assert_eq!(config.load_s(), 1805.0);
        Ok(())
    }
}
