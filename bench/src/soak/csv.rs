//! The soak's raw data as CSV: one row per broker sample ([`Sample`], every second) and one
//! per latency interval ([`IntervalRow`]). Every column is a number, so one macro gives each
//! row type its header, its line and its parser, and the columns cannot drift apart between
//! writing and `keel-bench report` reading them back.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// A row type whose fields are all numbers, written and read as one CSV line.
pub trait CsvRow: Sized {
    /// The header line's column names, in field order.
    const COLUMNS: &'static [&'static str];
    fn to_line(&self) -> String;
    fn from_line(line: &str) -> anyhow::Result<Self>;
}

macro_rules! csv_row {
    ($(#[$meta:meta])* pub struct $name:ident { $($(#[$field_meta:meta])* pub $field:ident,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
        pub struct $name { $($(#[$field_meta])* pub $field: f64,)* }

        impl CsvRow for $name {
            const COLUMNS: &'static [&'static str] = &[$(stringify!($field)),*];
            fn to_line(&self) -> String {
                [$(format_value(self.$field)),*].join(",")
            }
            fn from_line(line: &str) -> anyhow::Result<Self> {
                let mut values = line.split(',');
                let row = Self { $($field: parse_value(values.next(), stringify!($field))?,)* };
                anyhow::ensure!(values.next().is_none(), "more columns than {}", stringify!($name));
                Ok(row)
            }
        }
    };
}

csv_row! {
    /// The broker process and its data directory, sampled once a second.
    pub struct Sample {
        /// Seconds since the load started.
        pub t_s,
        /// VmRSS of the broker, from /proc/<pid>/status.
        pub rss_bytes,
        /// Entries of /proc/<pid>/fd: files, sockets, io_uring rings.
        pub open_files,
        pub threads,
        /// The machine's 1-minute load average, from /proc/loadavg.
        pub load1,
        /// Segment files (`.log`) of the soak topic on disk now.
        pub segment_files,
        /// Segment files of the soak topic seen so far that are gone now: retention's work.
        pub segments_deleted,
        /// Bytes of the soak topic's segment files on disk now.
        pub log_bytes,
        /// Every file under the data directory (all topics, the catalog, group offsets).
        pub data_files,
        /// Directories left of the admin load's short-lived topics (0 or 1 when deletes work).
        pub admin_topic_dirs,
        /// CPU seconds (user + system) of the broker so far.
        pub broker_cpu_s,
    }
}

csv_row! {
    /// One latency interval: percentiles (µs, from each message's intended send time) of the
    /// HDR histograms in `latency.hlog`, and the group and admin counters at its end.
    pub struct IntervalRow {
        pub t_start_s,
        pub t_end_s,
        pub produce_count,
        pub produce_p50_us,
        pub produce_p99_us,
        pub produce_p99_9_us,
        pub produce_max_us,
        pub e2e_count,
        pub e2e_p50_us,
        pub e2e_p99_us,
        pub e2e_p99_9_us,
        pub e2e_max_us,
        /// Admin requests answered in the interval, and their latency.
        pub admin_count,
        pub admin_p99_us,
        pub admin_max_us,
        /// Totals since the start, at the interval's end.
        pub group_generation,
        pub group_joins,
        pub group_commits,
        pub group_rebalances,
        pub group_errors,
        pub admin_cycles,
        pub admin_errors,
    }
}

/// Integers without a fraction (most columns are counts), others with six decimals.
fn format_value(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else {
        format!("{value:.6}")
    }
}

fn parse_value(text: Option<&str>, column: &str) -> anyhow::Result<f64> {
    let text = text.with_context(|| format!("column {column} is missing"))?;
    text.trim()
        .parse()
        .with_context(|| format!("column {column}: {text:?} is not a number"))
}

/// A CSV file written row by row as the soak goes, so a run that dies early keeps its data.
#[derive(Debug)]
pub struct CsvWriter {
    file: std::fs::File,
}

impl CsvWriter {
    /// Creates `path` with the header of `R`.
    pub fn create<R: CsvRow>(path: &Path) -> anyhow::Result<Self> {
        let mut file =
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        writeln!(file, "{}", R::COLUMNS.join(","))
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(Self { file })
    }

    pub fn write<R: CsvRow>(&mut self, row: &R) -> anyhow::Result<()> {
        writeln!(self.file, "{}", row.to_line()).context("writing a CSV row")
    }
}

/// Reads every row of a CSV file written by [`CsvWriter`]; the header must match `R`.
pub fn read_rows<R: CsvRow>(path: &Path) -> anyhow::Result<Vec<R>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut lines = BufReader::new(file).lines();
    let header = lines
        .next()
        .with_context(|| format!("{} is empty", path.display()))??;
    anyhow::ensure!(
        header == R::COLUMNS.join(","),
        "{}: the header is not {}",
        path.display(),
        R::COLUMNS.join(",")
    );
    lines
        .enumerate()
        .map(|(index, line)| {
            R::from_line(&line?).with_context(|| format!("{} line {}", path.display(), index + 2))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("samples.csv");
        let rows = [
            Sample {
                t_s: 1.0,
                rss_bytes: 31_457_280.0,
                load1: 2.37,
                ..Sample::default()
            },
            Sample {
                t_s: 2.5,
                open_files: 120.0,
                ..Sample::default()
            },
        ];
        let mut writer = CsvWriter::create::<Sample>(&path)?;
        for row in &rows {
            writer.write(row)?;
        }
        assert_eq!(read_rows::<Sample>(&path)?, rows);
        assert!(read_rows::<IntervalRow>(&path).is_err());
        assert!(Sample::from_line("1,2").is_err());
        Ok(())
    }
}
