//! The storage workload file and the matrix of cells it stands for.
//!
//! A cell is one set of storage settings, run against the engine alone or against the whole
//! broker. The matrix is not the cartesian product of the axes (seven backends × three fsync
//! policies × ... would take hours): each axis is swept alone around one baseline cell, every
//! other setting at the baseline's value, so a row of the report differs from the baseline in
//! exactly one setting.
//!
//! ```text
//!   baseline:  glommio, fsync always, 256 MiB segments, 4 MiB writes, ...
//!   axis io_backend:  uring | uring+fixed_buffers+fixed_files | ... | pwrite+buffered
//!   axis fsync:       interval_ms:100 | never
//!   ...               (a value equal to the baseline's is the baseline cell, not run twice)
//! ```
//!
//! A backend is named as `--io-backend` names it, followed by `+option` for the options of
//! `uring` (`fixed_buffers`, `fixed_files`, `sqpoll`, `linked_sync`) and of `pwrite`
//! (`buffered`: through the page cache instead of O_DIRECT). Writes are always whole 4 KiB
//! blocks at 4 KiB-aligned positions (the engine's `BLOCK_BYTES`, which O_DIRECT needs), so
//! alignment is fixed, not an axis; `write_bytes_max` is the write size axis.

use std::path::Path;

use anyhow::Context;
use keel_engine::{BackendOptions, FsyncPolicy, IoBackend};
use serde::{Deserialize, Serialize};

use crate::kafka::workload::Workload;
use crate::units::{format_bytes_short, parse_bytes};

/// A byte size in a workload file: a number, or a string such as `"64k"` or `"256m"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "SizeText", into = "u64")]
pub struct Size(pub u64);

#[derive(Deserialize)]
#[serde(untagged)]
enum SizeText {
    Number(u64),
    Text(String),
}

impl TryFrom<SizeText> for Size {
    type Error = String;
    fn try_from(text: SizeText) -> Result<Self, String> {
        match text {
            SizeText::Number(n) => Ok(Size(n)),
            SizeText::Text(t) => parse_bytes(&t)
                .map(|n| Size(n as u64))
                .map_err(|e| e.to_string()),
        }
    }
}

impl From<Size> for u64 {
    fn from(size: Size) -> u64 {
        size.0
    }
}

/// The storage settings of one cell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// `glommio`, `uring`, `uring+sqpoll`, `pwrite+buffered`, ...
    pub io_backend: String,
    /// `always`, `interval_ms:N` or `never`.
    pub fsync: String,
    pub segment_bytes_max: Size,
    pub write_bytes_max: Size,
    pub preallocate_bytes: Size,
    pub batch_cache_bytes_max: Size,
    pub group_commit: bool,
    /// Engine cells: the size of every appended batch. Broker cells: the producer's batch
    /// size (`batch_bytes` of the Kafka workload).
    #[serde(default)]
    pub batch_bytes: Option<Size>,
    /// Broker cells: the producer's linger.
    #[serde(default)]
    pub linger_ms: Option<u64>,
}

/// The axes swept around the baseline; an empty list is an axis not swept.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Axes {
    pub io_backend: Vec<String>,
    pub fsync: Vec<String>,
    pub segment_bytes_max: Vec<Size>,
    pub write_bytes_max: Vec<Size>,
    pub preallocate_bytes: Vec<Size>,
    pub batch_cache_bytes_max: Vec<Size>,
    pub group_commit: Vec<bool>,
    pub batch_bytes: Vec<Size>,
    /// Broker cells only.
    pub linger_ms: Vec<u64>,
}

/// The engine part: partitions on one executor, appenders in a closed loop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnginePart {
    pub seconds: f64,
    pub warmup_seconds: f64,
    pub batch_bytes: Size,
    pub partitions: usize,
    pub appenders_per_partition: usize,
    /// Closed segments are deleted past this per partition, so a long cell does not fill
    /// the disk.
    pub retention_bytes: Size,
    #[serde(default)]
    pub axes: Axes,
}

/// The broker part: the Kafka workload (its rate, duration and warm-up are the part's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerPart {
    pub seconds: f64,
    pub warmup_seconds: f64,
    /// Flags added to every broker's command line (`--shards 1`, say).
    #[serde(default)]
    pub extra_args: Vec<String>,
    pub workload: Workload,
    #[serde(default)]
    pub axes: Axes,
}

/// A storage workload file (`bench/workloads/storage-*.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageWorkload {
    pub name: String,
    /// Every cell runs this many times; odd passes run the cells in reverse order, so a
    /// machine that drifts during the run moves every cell alike.
    pub passes: usize,
    /// Seconds of each raw probe (run before every pass and after the last).
    pub raw_seconds: f64,
    /// Size of each raw probe's preallocated file.
    pub probe_file_bytes: Size,
    pub baseline: Settings,
    #[serde(default)]
    pub engine: Option<EnginePart>,
    #[serde(default)]
    pub broker: Option<BrokerPart>,
}

/// Whether a cell runs against the engine alone or the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    Engine,
    Broker,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Engine => "engine",
            Target::Broker => "broker",
        }
    }
}

/// One cell of the matrix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cell {
    pub target: Target,
    /// `baseline`, or the axis this cell moves.
    pub axis: String,
    /// The axis value, as written in the workload file.
    pub value: String,
    pub settings: Settings,
    /// File-name-safe and unique: `engine_baseline`, `broker_fsync_never`.
    pub key: String,
}

impl StorageWorkload {
    /// Reads and checks a storage workload file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let workload: Self =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        workload
            .check()
            .with_context(|| format!("workload {}", path.display()))?;
        Ok(workload)
    }

    /// Every bound the file must respect; every cell's settings must parse.
    pub fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!((1..=10).contains(&self.passes), "passes must be 1..=10");
        anyhow::ensure!(
            self.raw_seconds > 0.0 && self.raw_seconds.is_finite(),
            "raw_seconds must be positive"
        );
        anyhow::ensure!(
            self.engine.is_some() || self.broker.is_some(),
            "give an [engine] or a [broker] part"
        );
        if let Some(e) = &self.engine {
            anyhow::ensure!(
                e.seconds > 0.0 && e.warmup_seconds >= 0.0,
                "engine seconds must be positive"
            );
            anyhow::ensure!(
                (1..=1024).contains(&e.partitions)
                    && (1..=1024).contains(&e.appenders_per_partition),
                "engine partitions and appenders_per_partition must be 1..=1024"
            );
        }
        if let Some(b) = &self.broker {
            anyhow::ensure!(
                b.seconds > 0.0 && b.warmup_seconds >= 0.0,
                "broker seconds must be positive"
            );
            b.workload.check()?;
        }
        for cell in self.cells() {
            cell.settings
                .backend()
                .and_then(|_| cell.settings.fsync_policy())
                .with_context(|| format!("cell {}", cell.key))?;
        }
        Ok(())
    }

    /// The cells: per part, the baseline then each axis's values in file order.
    pub fn cells(&self) -> Vec<Cell> {
        let mut cells = Vec::new();
        if let Some(e) = &self.engine {
            let baseline = Settings {
                batch_bytes: Some(e.batch_bytes),
                linger_ms: None,
                ..self.baseline.clone()
            };
            cells.extend(part_cells(Target::Engine, &baseline, &e.axes));
        }
        if let Some(b) = &self.broker {
            let baseline = Settings {
                batch_bytes: Some(Size(b.workload.batch_bytes as u64)),
                linger_ms: Some(b.workload.linger_ms),
                ..self.baseline.clone()
            };
            cells.extend(part_cells(Target::Broker, &baseline, &b.axes));
        }
        cells
    }
}

/// Sets one size setting of a cell.
type SetSize = fn(&mut Settings, Size);

/// The baseline and one cell per axis value that differs from it.
fn part_cells(target: Target, baseline: &Settings, axes: &Axes) -> Vec<Cell> {
    let mut cells = vec![Cell {
        target,
        axis: "baseline".to_owned(),
        value: String::new(),
        settings: baseline.clone(),
        key: format!("{}_baseline", target.name()),
    }];
    let mut push = |axis: &str, value: String, settings: Settings| {
        if settings != *baseline {
            let key = format!("{}_{axis}_{}", target.name(), file_safe(&value));
            cells.push(Cell {
                target,
                axis: axis.to_owned(),
                value,
                settings,
                key,
            });
        }
    };
    let base = || baseline.clone();
    for v in &axes.io_backend {
        push(
            "io_backend",
            v.clone(),
            Settings {
                io_backend: v.clone(),
                ..base()
            },
        );
    }
    for v in &axes.fsync {
        push(
            "fsync",
            v.clone(),
            Settings {
                fsync: v.clone(),
                ..base()
            },
        );
    }
    let sizes: [(&str, &Vec<Size>, SetSize); 5] = [
        ("segment_bytes_max", &axes.segment_bytes_max, |s, v| {
            s.segment_bytes_max = v
        }),
        ("write_bytes_max", &axes.write_bytes_max, |s, v| {
            s.write_bytes_max = v
        }),
        ("preallocate_bytes", &axes.preallocate_bytes, |s, v| {
            s.preallocate_bytes = v
        }),
        (
            "batch_cache_bytes_max",
            &axes.batch_cache_bytes_max,
            |s, v| {
                s.batch_cache_bytes_max = v;
            },
        ),
        ("batch_bytes", &axes.batch_bytes, |s, v| {
            s.batch_bytes = Some(v)
        }),
    ];
    for (axis, values, set) in sizes {
        for v in values {
            let mut s = base();
            set(&mut s, *v);
            push(axis, format_bytes_short(v.0 as usize), s);
        }
    }
    for v in &axes.group_commit {
        push(
            "group_commit",
            v.to_string(),
            Settings {
                group_commit: *v,
                ..base()
            },
        );
    }
    if target == Target::Broker {
        for v in &axes.linger_ms {
            push(
                "linger_ms",
                v.to_string(),
                Settings {
                    linger_ms: Some(*v),
                    ..base()
                },
            );
        }
    }
    cells
}

fn file_safe(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// A backend and its options from a spec such as `uring+fixed_buffers+fixed_files` or
/// `pwrite+buffered`: the backend's name, then `+` and each option turned on.
///
/// # Errors
/// An unknown backend, or an option the backend does not have.
pub fn parse_backend(spec: &str) -> anyhow::Result<(IoBackend, BackendOptions)> {
    let mut parts = spec.split('+');
    let name = parts.next().unwrap_or_default();
    let backend: IoBackend = name.parse().map_err(anyhow::Error::msg)?;
    let mut options = BackendOptions::default();
    for option in parts {
        match (backend, option) {
            (IoBackend::Uring, "fixed_buffers") => options.uring.fixed_buffers = true,
            (IoBackend::Uring, "fixed_files") => options.uring.fixed_files = true,
            (IoBackend::Uring, "sqpoll") => options.uring.sqpoll = true,
            (IoBackend::Uring, "linked_sync") => options.uring.linked_sync = true,
            (IoBackend::Pwrite, "buffered") => options.pwrite_direct = false,
            (IoBackend::Pwrite, "direct") => options.pwrite_direct = true,
            _ => anyhow::bail!(
                "{spec}: {name} has no option {option:?} (uring: fixed_buffers, fixed_files, \
                 sqpoll, linked_sync; pwrite: buffered, direct)"
            ),
        }
    }
    Ok((backend, options))
}

impl Settings {
    /// The backend and its options, from `io_backend` (see [`parse_backend`]).
    pub fn backend(&self) -> anyhow::Result<(IoBackend, BackendOptions)> {
        parse_backend(&self.io_backend)
    }

    pub fn fsync_policy(&self) -> anyhow::Result<FsyncPolicy> {
        self.fsync.parse().map_err(anyhow::Error::msg)
    }

    /// The `keel` flags that set these settings (the broker's own defaults for the rest).
    pub fn broker_flags(&self) -> anyhow::Result<Vec<String>> {
        let (backend, options) = self.backend()?;
        let mut flags = vec![
            ("--io-backend", backend.to_string()),
            ("--fsync", self.fsync.clone()),
            ("--segment-bytes-max", self.segment_bytes_max.0.to_string()),
            ("--write-bytes-max", self.write_bytes_max.0.to_string()),
            ("--preallocate-bytes", self.preallocate_bytes.0.to_string()),
            (
                "--batch-cache-bytes-max",
                self.batch_cache_bytes_max.0.to_string(),
            ),
            ("--group-commit", self.group_commit.to_string()),
        ];
        match backend {
            IoBackend::Pwrite => flags.push(("--pwrite-direct", options.pwrite_direct.to_string())),
            IoBackend::Uring => {
                let u = options.uring;
                flags.push(("--uring-fixed-buffers", u.fixed_buffers.to_string()));
                flags.push(("--uring-fixed-files", u.fixed_files.to_string()));
                flags.push(("--uring-sqpoll", u.sqpoll.to_string()));
                flags.push(("--uring-linked-sync", u.linked_sync.to_string()));
            }
            IoBackend::Glommio => {}
        }
        Ok(flags
            .into_iter()
            .flat_map(|(flag, value)| [flag.to_owned(), value])
            .collect())
    }
}

/// Whether a workload file's text is a storage workload (it has a `[baseline]` table), for
/// tests that go over every shipped workload.
pub fn is_storage_workload(text: &str) -> bool {
    text.lines()
        .any(|l| l.trim_start().starts_with("[baseline]"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_storage_workloads_parse_and_make_one_axis_cells() -> anyhow::Result<()> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads");
        let mut count = 0;
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if !is_storage_workload(&std::fs::read_to_string(&path)?) {
                continue;
            }
            let workload = StorageWorkload::load(&path)?;
            let cells = workload.cells();
            let mut keys: Vec<&str> = cells.iter().map(|c| c.key.as_str()).collect();
            keys.sort_unstable();
            let before = keys.len();
            keys.dedup();
            assert_eq!(
                keys.len(),
                before,
                "{}: duplicate cell keys",
                path.display()
            );
            for cell in &cells {
                cell.settings.broker_flags()?;
            }
            count += 1;
        }
        assert!(count >= 2);
        Ok(())
    }

    #[test]
    fn backend_names_parse() -> anyhow::Result<()> {
        let mut s = Settings {
            io_backend: "uring+fixed_buffers+sqpoll".into(),
            fsync: "always".into(),
            segment_bytes_max: Size(1 << 30),
            write_bytes_max: Size(4 << 20),
            preallocate_bytes: Size(32 << 20),
            batch_cache_bytes_max: Size(0),
            group_commit: true,
            batch_bytes: None,
            linger_ms: None,
        };
        let (backend, options) = s.backend()?;
        assert_eq!(backend, IoBackend::Uring);
        assert!(options.uring.fixed_buffers && options.uring.sqpoll && !options.uring.fixed_files);
        s.io_backend = "pwrite+buffered".into();
        assert!(!s.backend()?.1.pwrite_direct);
        s.io_backend = "glommio+sqpoll".into();
        assert!(s.backend().is_err());
        Ok(())
    }
}
