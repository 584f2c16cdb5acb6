//! The shape of a benchmark report on disk and the small pieces every report shares.
//!
//! A run writes one folder under `results/`, named so that reports sort by date and say which
//! code and which machine produced them:
//!
//! ```text
//!   results/2026-11-25_1a2b3c4d5e6f_buildbox/
//!     command.txt     the exact argv, shell-quoted, one line
//!     machine.json    CPU, memory, kernel, storage (limits::MachineInfo)
//!     limits.json     summary JSON (and limits.md, *.hdr, *.png next to it)
//! ```
//!
//! `keel-bench engine` writes its own files into such a folder (see `engine::files`):
//! `summary.json`, `report.md`, one `.hdr` per scenario and the plots.

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::histogram::{LatencySummary, REPORTED_QUANTILES};

/// How many `-2`, `-3`, ... suffixes [`create_run_dir`] tries when the name is taken.
const RUN_DIR_SUFFIX_MAX: u32 = 100;

/// `<date>_<gitsha>_<hostname>`, each part reduced to `[A-Za-z0-9.-]` so the name is one safe
/// path component whatever the hostname holds.
pub fn run_dir_name(date: &str, git_sha: &str, hostname: &str) -> String {
    format!(
        "{}_{}_{}",
        sanitize_component(date),
        sanitize_component(git_sha),
        sanitize_component(hostname)
    )
}

fn sanitize_component(part: &str) -> String {
    let cleaned: String = part
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let trimmed = cleaned.trim_matches(|c| c == '.' || c == '-');
    if trimmed.is_empty() {
        "unknown".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// The UTC calendar date `YYYY-MM-DD` of a Unix time in seconds.
pub fn utc_date(unix_s: u64) -> String {
    let (year, month, day) = civil_from_days((unix_s / 86_400) as i64);
    format!("{year:04}-{month:02}-{day:02}")
}

/// Converts days since 1970-01-01 to a proleptic Gregorian (year, month, day).
///
/// Howard Hinnant's `civil_from_days`: shift the epoch to 0000-03-01 so the leap day is the
/// last day of a year, then split into 400-year eras (146 097 days each), years of the era,
/// and days of the year, counting months from March.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The short (12 hex digit) commit of the repository holding `dir`, or `None` outside git.
pub fn git_short_sha(dir: &Path) -> Option<String> {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()?;
    let sha = String::from_utf8(output.stdout).ok()?.trim().to_owned();
    (output.status.success() && !sha.is_empty()).then_some(sha)
}

/// The commit a run measured, and the files that differed from it (a dirty tree is said, not
/// hidden: on a shared checkout others may have work in progress outside the measured code).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitRef {
    /// `git rev-parse HEAD`, or `None` outside a repository.
    pub commit: Option<String>,
    /// `git status --porcelain` lines.
    pub dirty_paths: Vec<String>,
}

/// What the summary.json of every Kafka report (sweep, soak) opens with: which kind of report
/// it is, the bench's version, the exact command, the code and the machine. Flattened into
/// the summary, so the file keeps these as top-level keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunIdentity {
    pub kind: String,
    pub keel_bench_version: String,
    pub command: Vec<String>,
    pub git: GitRef,
    pub started_at_unix_s: u64,
    pub machine: crate::limits::MachineInfo,
}

/// The [`GitRef`] of the repository holding `dir`.
pub fn git_ref(dir: &Path) -> GitRef {
    let git = |args: &[&str]| -> Option<String> {
        let output = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
    };
    GitRef {
        commit: git(&["rev-parse", "HEAD"]).map(|s| s.trim().to_owned()),
        dirty_paths: git(&["status", "--porcelain"])
            .map(|s| s.lines().map(str::to_owned).collect())
            .unwrap_or_default(),
    }
}

/// The 1, 5 and 15 minute load averages from /proc/loadavg.
pub fn load_average() -> Option<[f64; 3]> {
    let text = fs::read_to_string("/proc/loadavg").ok()?;
    let mut fields = text.split_whitespace().map(|f| f.parse::<f64>().ok());
    Some([fields.next()??, fields.next()??, fields.next()??])
}

/// The machine's host name (`/proc/sys/kernel/hostname`), or `unknown-host`.
pub fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown-host".to_owned())
}

/// Creates `results_root/<today>_<gitsha>_<hostname>/` (with `-2`, `-3`, ... appended when a
/// run of the same day, commit and machine already has that name) and returns its path. The
/// commit is read from the current directory's repository; `nogit` outside one.
pub fn create_run_dir(results_root: &Path) -> anyhow::Result<PathBuf> {
    create_run_dir_with_suffix(results_root, "")
}

/// [`create_run_dir`] with `suffix` after the host name (`_soak`), so reports of different
/// kinds from one commit and day read apart.
pub fn create_run_dir_with_suffix(results_root: &Path, suffix: &str) -> anyhow::Result<PathBuf> {
    let now_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let sha = git_short_sha(Path::new(".")).unwrap_or_else(|| "nogit".to_owned());
    let base = run_dir_name(&utc_date(now_s), &sha, &hostname()) + suffix;
    fs::create_dir_all(results_root)
        .with_context(|| format!("creating {}", results_root.display()))?;
    for attempt in 1..=RUN_DIR_SUFFIX_MAX {
        let name = if attempt == 1 {
            base.clone()
        } else {
            format!("{base}-{attempt}")
        };
        let path = results_root.join(name);
        match fs::create_dir(&path) {
            Ok(()) => return Ok(path),
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(error) => {
                return Err(error).with_context(|| format!("creating {}", path.display()))
            }
        }
    }
    anyhow::bail!(
        "{} already holds {RUN_DIR_SUFFIX_MAX} runs named {base}",
        results_root.display()
    )
}

/// Quotes one argument for a POSIX shell, leaving plain words as they are.
pub fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// A run's histograms by the file name they are saved under.
pub type HistogramsByFile<'a> =
    std::collections::HashMap<&'a str, &'a hdrhistogram::Histogram<u64>>;

/// Writes a run folder's raw data: `command.txt`, `machine.json`, every histogram (HDR V2,
/// under its file name) and `summary.json`. Returns the paths written and the histograms by file
/// name, for the Markdown and plots rendered from them next.
pub fn write_raw_run<'a, M: Serialize, S: Serialize>(
    dir: &Path,
    command: &[String],
    machine: &M,
    histograms: &'a [(String, hdrhistogram::Histogram<u64>)],
    summary: &S,
) -> anyhow::Result<(Vec<PathBuf>, HistogramsByFile<'a>)> {
    let mut written = vec![write_command_txt(dir, command)?];
    let path = dir.join("machine.json");
    write_json(&path, machine)?;
    written.push(path);
    for (file, histogram) in histograms {
        let path = dir.join(file);
        crate::histogram::save_v2(histogram, &path)?;
        written.push(path);
    }
    let path = dir.join("summary.json");
    write_json(&path, summary)?;
    written.push(path);
    let by_file = histograms.iter().map(|(f, h)| (f.as_str(), h)).collect();
    Ok((written, by_file))
}

/// Writes a whole run folder: the raw data ([`write_raw_run`]), then what `render` draws from
/// its histograms (the Markdown page and the plots). Returns every path written.
pub fn write_run_folder<M: Serialize, S: Serialize>(
    dir: &Path,
    command: &[String],
    machine: &M,
    histograms: &[(String, hdrhistogram::Histogram<u64>)],
    summary: &S,
    render: impl FnOnce(&HistogramsByFile<'_>) -> anyhow::Result<Vec<PathBuf>>,
) -> anyhow::Result<Vec<PathBuf>> {
    let (mut written, by_file) = write_raw_run(dir, command, machine, histograms, summary)?;
    written.extend(render(&by_file)?);
    Ok(written)
}

/// The `kind` a run folder's `summary.json` states (`sweep`, `storage`; the engine report
/// states none), so `keel-bench report DIR` knows which report to redraw.
pub fn summary_kind(dir: &Path) -> Option<String> {
    let text = fs::read_to_string(dir.join("summary.json")).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    value.get("kind")?.as_str().map(str::to_owned)
}

/// Whether `dir/summary.json` names `kind` as its `kind` (a sweep's, a soak's, a storage
/// matrix's): how `keel-bench report DIR` tells report folders apart.
pub fn summary_kind_is(dir: &Path, kind: &str) -> bool {
    summary_kind(dir).as_deref() == Some(kind)
}

/// Reads and parses a run folder's `summary.json`.
pub fn read_summary<T: serde::de::DeserializeOwned>(dir: &Path) -> anyhow::Result<T> {
    let path = dir.join("summary.json");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Loads the named histogram files of a run folder, by file name.
pub fn load_histograms<'a>(
    dir: &Path,
    files: impl IntoIterator<Item = &'a str>,
) -> anyhow::Result<Vec<(String, hdrhistogram::Histogram<u64>)>> {
    files
        .into_iter()
        .map(|file| Ok((file.to_owned(), crate::histogram::load_v2(&dir.join(file))?)))
        .collect()
}

/// Loaded histograms as [`HistogramsByFile`], for rendering.
pub fn by_file(loaded: &[(String, hdrhistogram::Histogram<u64>)]) -> HistogramsByFile<'_> {
    loaded.iter().map(|(f, h)| (f.as_str(), h)).collect()
}

/// Writes `dir/command.txt`: the exact argv, shell-quoted, on one line.
pub fn write_command_txt(dir: &Path, argv: &[String]) -> anyhow::Result<PathBuf> {
    let path = dir.join("command.txt");
    let line = argv
        .iter()
        .map(|arg| shell_quote(arg))
        .collect::<Vec<_>>()
        .join(" ");
    fs::write(&path, line + "\n").with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Writes `value` as pretty JSON with a trailing newline.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(value)
        .with_context(|| format!("encoding JSON for {}", path.display()))?;
    text.push('\n');
    let mut file =
        fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// A Markdown table of latency percentiles in microseconds, one row per named summary:
///
/// ```text
/// | | count | p50 | p90 | p99 | p99.9 | p99.99 | max |
/// |---|---:|---:|---:|---:|---:|---:|---:|
/// | fdatasync (4 KiB) | 5120 | 212 | 3010 | 4400 | 7900 | 8100 | 8112 |
/// ```
pub fn percentile_table_markdown(rows: &[(&str, &LatencySummary)]) -> String {
    let mut table = String::from("| | count |");
    for (_, label) in REPORTED_QUANTILES {
        let _ = write!(table, " {label} |");
    }
    table.push_str(" max |\n|---|---:|");
    table.push_str(&"---:|".repeat(REPORTED_QUANTILES.len() + 1));
    table.push('\n');
    for (name, summary) in rows {
        let _ = write!(
            table,
            "| {} | {} |",
            name.replace('|', "\\|"),
            summary.count
        );
        for value in summary.row_us() {
            let _ = write!(table, " {} |", format_us(value));
        }
        table.push('\n');
    }
    table
}

/// Microseconds with about three significant figures: `0.81`, `13.2`, `212`, `4400`.
pub fn format_us(value_us: f64) -> String {
    if value_us < 10.0 {
        format!("{value_us:.2}")
    } else if value_us < 100.0 {
        format!("{value_us:.1}")
    } else {
        format!("{value_us:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary() -> LatencySummary {
        LatencySummary {
            count: 5120,
            min_us: 150.0,
            mean_us: 900.0,
            p50_us: 212.4,
            p90_us: 3010.0,
            p99_us: 4400.2,
            p99_9_us: 7900.0,
            p99_99_us: 8100.0,
            max_us: 8112.0,
        }
    }

    #[test]
    fn names_run_dirs() {
        assert_eq!(
            run_dir_name("2026-11-25", "1a2b3c4d5e6f", "buildbox"),
            "2026-11-25_1a2b3c4d5e6f_buildbox"
        );
        assert_eq!(
            run_dir_name("2026-11-25", "abc", "my host/../x_y"),
            "2026-11-25_abc_my-host-..-x-y"
        );
        assert_eq!(
            run_dir_name("2026-11-25", "", "..."),
            "2026-11-25_unknown_unknown"
        );
    }

    #[test]
    fn converts_unix_time_to_utc_dates() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(951_782_400), "2000-02-29");
        assert_eq!(utc_date(1_709_251_199), "2024-02-29");
        assert_eq!(utc_date(1_709_251_200), "2024-03-01");
        assert_eq!(utc_date(1_795_609_000), "2026-11-25");
    }

    #[test]
    fn formats_percentile_table() {
        let s = summary();
        let table = percentile_table_markdown(&[("fdatasync (4 KiB)", &s)]);
        let expected = "| | count | p50 | p90 | p99 | p99.9 | p99.99 | max |\n\
                        |---|---:|---:|---:|---:|---:|---:|---:|\n\
                        | fdatasync (4 KiB) | 5120 | 212 | 3010 | 4400 | 7900 | 8100 | 8112 |\n";
        assert_eq!(table, expected);
    }

    #[test]
    fn formats_microseconds() {
        assert_eq!(format_us(0.814), "0.81");
        assert_eq!(format_us(13.24), "13.2");
        assert_eq!(format_us(212.4), "212");
    }

    #[test]
    fn quotes_for_the_shell() {
        assert_eq!(shell_quote("--sizes=4k,1m"), "--sizes=4k,1m");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn creates_unique_run_dirs() -> anyhow::Result<()> {
        let root = tempfile::tempdir()?;
        let first = create_run_dir(root.path())?;
        let second = create_run_dir(root.path())?;
        assert_ne!(first, second);
        assert!(second.to_string_lossy().ends_with("-2"));
        let command = write_command_txt(&first, &["keel-bench".into(), "a b".into()])?;
        assert_eq!(fs::read_to_string(command)?, "keel-bench 'a b'\n");
        Ok(())
    }
}
