//! Workload files: the shape of a Kafka load, in TOML, so the standard shapes are named files
//! under `bench/workloads/` and a report says exactly which it ran.
//!
//! ```toml
//! name = "1-topic-8-partitions-1kb"
//! topics = 1
//! partitions = 8            # per topic
//! producers = 4             # one connection each
//! consumers = 2             # each assigned a share of the partitions
//! message_bytes = 1024
//! keys = "none"             # none | round-robin | random:N (N distinct keys)
//! batch_bytes = 65536       # a partition's batch is sent when it holds this much ...
//! linger_ms = 2             # ... or when its oldest message is this old
//! in_flight_max = 5         # requests one producer connection has unanswered
//! acks = -1                 # -1 (all), 1, 0 is not supported (no answer to time)
//! compression = "none"      # none | gzip | snappy | lz4 | zstd
//! rate = 20000              # messages per second over all producers; 0 = as fast as acked
//! duration_s = 20
//! warmup_s = 5
//! ```

use std::path::Path;

use anyhow::Context;
use kafka_protocol::records::Compression;
use serde::{Deserialize, Serialize};

/// Most topics, partitions, producers or consumers a workload may ask for.
pub const COUNT_MAX: u32 = 10_000;

/// Largest message a workload may ask for.
pub const MESSAGE_BYTES_MAX: usize = 8 << 20;

/// How message keys are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Keys {
    /// No key; partitions are taken round-robin, message by message.
    None,
    /// Key `k<i>` with i counting up per producer; partition round-robin as well.
    RoundRobin,
    /// A key drawn uniformly from `n` distinct keys; partition = hash(key) mod partitions.
    Random(u32),
}

impl TryFrom<String> for Keys {
    type Error = String;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        match text.as_str() {
            "none" => Ok(Self::None),
            "round-robin" => Ok(Self::RoundRobin),
            other => other
                .strip_prefix("random:")
                .and_then(|n| n.parse::<u32>().ok())
                .filter(|n| *n > 0)
                .map(Self::Random)
                .ok_or_else(|| format!("keys = {other:?}: use none, round-robin or random:N")),
        }
    }
}

impl From<Keys> for String {
    fn from(keys: Keys) -> Self {
        match keys {
            Keys::None => "none".to_owned(),
            Keys::RoundRobin => "round-robin".to_owned(),
            Keys::Random(n) => format!("random:{n}"),
        }
    }
}

/// One workload, as read from its TOML file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    pub name: String,
    #[serde(default = "one")]
    pub topics: u32,
    pub partitions: u32,
    pub producers: u32,
    #[serde(default)]
    pub consumers: u32,
    pub message_bytes: usize,
    #[serde(default = "no_keys")]
    pub keys: Keys,
    pub batch_bytes: usize,
    #[serde(default)]
    pub linger_ms: u64,
    #[serde(default = "five")]
    pub in_flight_max: u32,
    #[serde(default = "acks_all")]
    pub acks: i16,
    #[serde(default = "no_compression")]
    pub compression: String,
    /// Messages per second over all producers; 0 runs as fast as acknowledgements allow.
    #[serde(default)]
    pub rate: u64,
    pub duration_s: f64,
    #[serde(default = "five_f")]
    pub warmup_s: f64,
}

fn one() -> u32 {
    1
}
fn five() -> u32 {
    5
}
fn five_f() -> f64 {
    5.0
}
fn acks_all() -> i16 {
    -1
}
fn no_keys() -> Keys {
    Keys::None
}
fn no_compression() -> String {
    "none".to_owned()
}

impl Workload {
    /// Reads and checks a workload file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading workload {}", path.display()))?;
        let workload: Self = toml::from_str(&text)
            .with_context(|| format!("parsing workload {}", path.display()))?;
        workload
            .check()
            .with_context(|| format!("workload {}", path.display()))?;
        Ok(workload)
    }

    /// Every bound a workload must respect, with the reason when it does not.
    pub fn check(&self) -> anyhow::Result<()> {
        for (what, count, least) in [
            ("topics", self.topics, 1),
            ("partitions", self.partitions, 1),
            ("producers", self.producers, 1),
            ("consumers", self.consumers, 0),
        ] {
            anyhow::ensure!(
                (least..=COUNT_MAX).contains(&count),
                "{what} = {count} is outside {least}..={COUNT_MAX}"
            );
        }
        anyhow::ensure!(
            (crate::kafka::records::VALUE_HEADER_BYTES..=MESSAGE_BYTES_MAX)
                .contains(&self.message_bytes),
            "message_bytes = {} is outside 16..={MESSAGE_BYTES_MAX}",
            self.message_bytes
        );
        anyhow::ensure!(
            self.batch_bytes >= self.message_bytes,
            "batch_bytes must hold at least one message"
        );
        anyhow::ensure!(
            (1..=1000).contains(&self.in_flight_max),
            "in_flight_max = {} is outside 1..=1000",
            self.in_flight_max
        );
        anyhow::ensure!(
            self.acks == -1 || self.acks == 1,
            "acks = {}: use -1 (all) or 1; acks=0 has no answer to time",
            self.acks
        );
        self.compression_codec()?;
        anyhow::ensure!(
            self.duration_s > 0.0 && self.duration_s.is_finite() && self.warmup_s >= 0.0,
            "duration_s must be positive and warmup_s not negative"
        );
        Ok(())
    }

    /// The kafka-protocol codec named by `compression`.
    pub fn compression_codec(&self) -> anyhow::Result<Compression> {
        Ok(match self.compression.as_str() {
            "none" => Compression::None,
            "gzip" => Compression::Gzip,
            "snappy" => Compression::Snappy,
            "lz4" => Compression::Lz4,
            "zstd" => Compression::Zstd,
            other => anyhow::bail!("compression = {other:?}: use none, gzip, snappy, lz4 or zstd"),
        })
    }

    /// The topic names of this workload.
    pub fn topic_names(&self) -> Vec<String> {
        (0..self.topics)
            .map(|t| format!("bench-{}-{t}", self.name))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_checks() -> anyhow::Result<()> {
        let text = r#"
            name = "t"
            partitions = 8
            producers = 2
            consumers = 1
            message_bytes = 1024
            keys = "random:100"
            batch_bytes = 65536
            linger_ms = 2
            rate = 1000
            duration_s = 1
        "#;
        let workload: Workload = toml::from_str(text)?;
        workload.check()?;
        assert_eq!(workload.keys, Keys::Random(100));
        assert_eq!(workload.acks, -1);
        assert_eq!(workload.topic_names(), ["bench-t-0"]);
        let bad = Workload {
            acks: 0,
            ..workload.clone()
        };
        assert!(bad.check().is_err());
        assert!(toml::from_str::<Workload>(&text.replace("random:100", "random:x")).is_err());
        Ok(())
    }

    #[test]
    fn shipped_workloads_parse() -> anyhow::Result<()> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads");
        let mut count = 0;
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            // Soak settings files hold a workload and more; soak::config's test reads them.
            // Storage matrices (`keel-bench storage`) are checked by their own parser.
            if path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("soak-"))
                || crate::storage::matrix::is_storage_workload(&std::fs::read_to_string(&path)?)
            {
                continue;
            }
            Workload::load(&path)?;
            count += 1;
        }
        assert!(count >= 3);
        Ok(())
    }
}
