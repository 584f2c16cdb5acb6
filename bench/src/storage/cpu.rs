//! CPU time of a process and of each of its threads, so a report can say what each I/O path
//! costs per MiB written, not just how fast it is.
//!
//! Where the time of a write goes depends on the backend: glommio and `uring` submit from the
//! executor thread, and the kernel runs what cannot complete at once (fdatasync; O_DIRECT
//! writes into unwritten extents) on `iou-wrk-*` threads, or polls with an `iou-sqp-*` thread
//! under SQPOLL; `pwrite` hands every system call to a `blocking-*` pool thread. All of those
//! are threads of the process, so the process total catches them all, and the per-thread
//! figures say which kind did the work.
//!
//! The process total comes from `getrusage(RUSAGE_SELF)` (or `/proc/PID/stat` for another
//! process): it includes threads that exited meanwhile. The per-thread figures come from
//! `/proc/PID/task/*/schedstat` (nanoseconds on the CPU, finer than `stat`'s clock ticks); a
//! thread that exited between two samples is missing from them, so they are a lower bound.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One reading of a process's CPU time.
#[derive(Debug, Clone, PartialEq)]
pub struct CpuSample {
    /// User + system seconds of the whole process so far.
    process_s: f64,
    /// The thread that took the sample (the executor, in an engine cell), if it is one of the
    /// process's threads.
    caller_tid: Option<u32>,
    /// Per thread: id, name, nanoseconds on the CPU so far.
    threads: Vec<(u32, String, u64)>,
}

/// CPU seconds spent between two samples.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuUse {
    /// The whole process.
    pub process_s: f64,
    /// The sampling thread alone (the engine's executor), when it was sampled.
    pub caller_s: Option<f64>,
    /// Per kind of thread (name without its number: `iou-wrk`, `iou-sqp`, `blocking`, and
    /// `executor` for the sampling thread), seconds; threads that exited are missed.
    pub by_thread_kind_s: BTreeMap<String, f64>,
}

impl CpuSample {
    /// The calling process, taken on the calling thread (whose time is then `caller_s`).
    pub fn now() -> Option<Self> {
        // SAFETY: getrusage writes one plain-data struct we own; zeroed is a valid start.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: a valid pointer to that struct for the call; RUSAGE_SELF is always valid.
        if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
            return None;
        }
        let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        // SAFETY: gettid has no preconditions.
        let tid = u32::try_from(unsafe { libc::gettid() }).ok();
        Some(Self {
            process_s: seconds(usage.ru_utime) + seconds(usage.ru_stime),
            caller_tid: tid,
            threads: threads("self"),
        })
    }

    /// Another process, by id (a broker keel-bench started).
    pub fn of_process(pid: u32) -> Option<Self> {
        Some(Self {
            process_s: crate::kafka::run::process_cpu_s(pid)?,
            caller_tid: None,
            threads: threads(&pid.to_string()),
        })
    }

    /// What was spent from `self` to `later` (of the same process).
    pub fn until(&self, later: &CpuSample) -> CpuUse {
        let mut by_kind: BTreeMap<String, f64> = BTreeMap::new();
        let mut caller_s = None;
        for (tid, name, run_ns) in &later.threads {
            let before = self
                .threads
                .iter()
                .find(|(t, _, _)| t == tid)
                .map_or(0, |(_, _, ns)| *ns);
            let spent_s = run_ns.saturating_sub(before) as f64 / 1e9;
            let kind = if Some(*tid) == self.caller_tid {
                caller_s = Some(spent_s);
                "executor".to_owned()
            } else {
                thread_kind(name)
            };
            *by_kind.entry(kind).or_default() += spent_s;
        }
        by_kind.retain(|_, s| *s > 0.0);
        CpuUse {
            process_s: (later.process_s - self.process_s).max(0.0),
            caller_s,
            by_thread_kind_s: by_kind,
        }
    }
}

/// A thread's kind: its name without the trailing number (`iou-wrk-12345` is `iou-wrk`).
fn thread_kind(name: &str) -> String {
    let kind = name.trim_end_matches(|c: char| c.is_ascii_digit() || c == '-');
    if kind.is_empty() {
        name.to_owned()
    } else {
        kind.to_owned()
    }
}

/// Every thread of `/proc/<proc_dir>/task`: id, name, nanoseconds on the CPU.
fn threads(proc_dir: &str) -> Vec<(u32, String, u64)> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{proc_dir}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|task| {
            let tid = task.file_name().to_str()?.parse::<u32>().ok()?;
            let name = std::fs::read_to_string(task.path().join("comm")).ok()?;
            let schedstat = std::fs::read_to_string(task.path().join("schedstat")).ok()?;
            let run_ns = schedstat.split_whitespace().next()?.parse::<u64>().ok()?;
            Some((tid, name.trim().to_owned(), run_ns))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_thread_kinds() {
        assert_eq!(thread_kind("iou-wrk-12345"), "iou-wrk");
        assert_eq!(thread_kind("blocking-3"), "blocking");
        assert_eq!(thread_kind("keel-shard-0"), "keel-shard");
        assert_eq!(thread_kind("123"), "123");
    }

    #[test]
    fn measures_this_process() {
        let Some(start) = CpuSample::now() else {
            return;
        };
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let Some(end) = CpuSample::now() else {
            return;
        };
        let used = start.until(&end);
        assert!(used.process_s >= 0.0);
        assert!(used.caller_s.is_some_and(|s| s >= 0.0));
    }
}
