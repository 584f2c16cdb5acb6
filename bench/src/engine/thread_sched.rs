//! How a thread spent a stretch of wall time, from `/proc/thread-self/schedstat`: running on
//! its CPU, runnable but waiting for the CPU (another thread or process had it), or asleep
//! (parked in io_uring, waiting for I/O). On a shared two-core machine the middle one is the
//! figure that says whether a slow run was the engine's fault.
//!
//! io_uring runs what cannot complete without blocking (fdatasync; on ext4, O_DIRECT writes
//! into unwritten extents) on `iou-wrk-*` worker threads of the process, which inherit the
//! submitting thread's CPU affinity: a pinned executor's workers share its one core. So the
//! sample also sums the CPU time of those workers.

use std::time::Instant;

/// One reading of the calling thread's scheduler counters.
#[derive(Debug, Clone, Copy)]
pub struct SchedSample {
    at: Instant,
    run_ns: u64,
    wait_ns: u64,
    /// CPU time of the process's io_uring worker threads alive at the sample.
    io_workers_run_ns: u64,
}

/// Shares of the wall time between two samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SchedShare {
    pub on_cpu_fraction: f64,
    pub runqueue_fraction: f64,
    /// CPU time of io_uring workers over the wall time (workers that exited during the
    /// stretch are missed, so this is a lower bound).
    pub io_workers_on_cpu_fraction: f64,
}

impl SchedSample {
    /// Reads the calling thread's counters, or `None` where the kernel does not expose them.
    pub fn now() -> Option<Self> {
        let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
        let (run_ns, wait_ns) = parse(&text)?;
        Some(Self {
            at: Instant::now(),
            run_ns,
            wait_ns,
            io_workers_run_ns: io_workers_run_ns(),
        })
    }

    /// The shares of the time from `self` to `later` (both of the same thread).
    pub fn share_until(&self, later: &SchedSample) -> Option<SchedShare> {
        let wall_ns = later.at.checked_duration_since(self.at)?.as_nanos() as f64;
        (wall_ns > 0.0).then(|| SchedShare {
            on_cpu_fraction: later.run_ns.saturating_sub(self.run_ns) as f64 / wall_ns,
            runqueue_fraction: later.wait_ns.saturating_sub(self.wait_ns) as f64 / wall_ns,
            io_workers_on_cpu_fraction: later
                .io_workers_run_ns
                .saturating_sub(self.io_workers_run_ns)
                as f64
                / wall_ns,
        })
    }
}

/// The summed run time of this process's `iou-wrk-*` threads.
fn io_workers_run_ns() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .is_ok_and(|comm| comm.starts_with("iou-wrk"))
        })
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|text| parse(&text))
        .map(|(run_ns, _)| run_ns)
        .sum()
}

/// `run_ns wait_ns timeslices`.
fn parse(text: &str) -> Option<(u64, u64)> {
    let mut fields = text.split_whitespace().map(str::parse::<u64>);
    Some((fields.next()?.ok()?, fields.next()?.ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_schedstat() {
        assert_eq!(parse("1449330 25 2\n"), Some((1_449_330, 25)));
        assert_eq!(parse("x 1 2"), None);
        assert_eq!(parse(""), None);
    }
}
