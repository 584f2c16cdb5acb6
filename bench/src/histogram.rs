//! HDR histogram helpers shared by every probe and report: one way to create a latency
//! histogram, one summary shape (the percentiles every report prints), and the raw V2 file.
//!
//! Histograms store integers in the unit the recorder chose (the probes say which: fdatasync in
//! microseconds, loopback round trips in nanoseconds). A [`LatencySummary`] converts to one
//! display unit, microseconds, so tables and plots can put them side by side.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::Context;
use hdrhistogram::serialization::{Serializer, V2Serializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Significant figures kept by every latency histogram: 3 means a value is stored within 0.1%.
pub const SIGNIFICANT_FIGURES: u8 = 3;

/// The quantiles every summary and table reports, with the label used for each.
pub const REPORTED_QUANTILES: [(f64, &str); 5] = [
    (0.50, "p50"),
    (0.90, "p90"),
    (0.99, "p99"),
    (0.999, "p99.9"),
    (0.9999, "p99.99"),
];

/// A histogram for values from 1 to `highest_value` in the recorder's unit, 3 significant
/// figures. Record with `saturating_record`, so an outlier above the bound is kept as the bound
/// instead of being lost.
pub fn new_histogram(highest_value: u64) -> anyhow::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, highest_value.max(2), SIGNIFICANT_FIGURES)
        .with_context(|| format!("creating a histogram with bounds 1..={highest_value}"))
}

/// The histogram in `slot`, replaced by an empty one with the bounds of [`new_histogram`]: how
/// a recorder that others keep writing to is cut into intervals.
pub fn take_interval(
    slot: &std::sync::Mutex<Histogram<u64>>,
    highest_value: u64,
) -> anyhow::Result<Histogram<u64>> {
    let fresh = new_histogram(highest_value)?;
    let mut current = slot
        .lock()
        .map_err(|_| anyhow::anyhow!("a histogram's lock is poisoned"))?;
    Ok(std::mem::replace(&mut *current, fresh))
}

/// The reported percentiles of one histogram, converted to microseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// How many values were recorded.
    pub count: u64,
    pub min_us: f64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p99_9_us: f64,
    pub p99_99_us: f64,
    pub max_us: f64,
}

impl LatencySummary {
    /// Summarises `histogram`, whose values are in units of `unit_us` microseconds each
    /// (1.0 for a histogram of microseconds, 0.001 for one of nanoseconds).
    pub fn from_histogram(histogram: &Histogram<u64>, unit_us: f64) -> Self {
        let at = |quantile: f64| histogram.value_at_quantile(quantile) as f64 * unit_us;
        let [p50, p90, p99, p99_9, p99_99] = REPORTED_QUANTILES.map(|(quantile, _)| at(quantile));
        Self {
            count: histogram.len(),
            min_us: histogram.min() as f64 * unit_us,
            mean_us: histogram.mean() * unit_us,
            p50_us: p50,
            p90_us: p90,
            p99_us: p99,
            p99_9_us: p99_9,
            p99_99_us: p99_99,
            max_us: histogram.max() as f64 * unit_us,
        }
    }

    /// The reported percentiles then the maximum, in the order of a table row.
    pub fn row_us(&self) -> [f64; 6] {
        [
            self.p50_us,
            self.p90_us,
            self.p99_us,
            self.p99_9_us,
            self.p99_99_us,
            self.max_us,
        ]
    }
}

/// Writes `histogram` as one V2-serialized (uncompressed, binary) HDR histogram, readable by
/// `hdrhistogram::serialization::Deserializer` and by HdrHistogram's other implementations.
pub fn save_v2(histogram: &Histogram<u64>, path: &Path) -> anyhow::Result<()> {
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut writer = BufWriter::new(file);
    V2Serializer::new()
        .serialize(histogram, &mut writer)
        .with_context(|| format!("serializing a histogram to {}", path.display()))?;
    writer
        .flush()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Reads one V2 histogram file, as [`save_v2`] writes it.
pub fn load_v2(path: &Path) -> anyhow::Result<Histogram<u64>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    hdrhistogram::serialization::Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .with_context(|| format!("decoding the histogram in {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hdrhistogram::serialization::Deserializer;

    #[test]
    fn summary_scales_units() -> anyhow::Result<()> {
        let mut histogram = new_histogram(1_000_000)?;
        for value in 1..=1000 {
            histogram.saturating_record(value * 1000);
        }
        let summary = LatencySummary::from_histogram(&histogram, 0.001);
        assert_eq!(summary.count, 1000);
        assert!((summary.p50_us - 500.0).abs() < 1.0, "{summary:?}");
        assert!((summary.max_us - 1000.0).abs() < 1.0, "{summary:?}");
        assert!(summary.p99_us <= summary.p99_9_us && summary.p99_9_us <= summary.max_us);
        Ok(())
    }

    #[test]
    fn v2_file_round_trips() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("h.hdr");
        let mut histogram = new_histogram(10_000)?;
        histogram.saturating_record(42);
        histogram.saturating_record(20_000);
        save_v2(&histogram, &path)?;
        let bytes = std::fs::read(&path)?;
        let back: Histogram<u64> = Deserializer::new().deserialize(&mut bytes.as_slice())?;
        assert_eq!(back.len(), 2);
        assert_eq!(back.max(), histogram.max());
        Ok(())
    }
}
