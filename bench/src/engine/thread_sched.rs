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
    /// getrusage(RUSAGE_THREAD): user and system time, minor page faults.
    user_us: u64,
    system_us: u64,
    minor_faults: u64,
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
    /// The executor's CPU time split into user and kernel (system) time.
    pub user_fraction: f64,
    pub system_fraction: f64,
    /// Minor page faults the executor took (first touches of fresh memory).
    pub minor_faults: u64,
}

impl SchedSample {
    /// Reads the calling thread's counters, or `None` where the kernel does not expose them.
    pub fn now() -> Option<Self> {
        let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
        let (run_ns, wait_ns) = parse(&text)?;
        let usage = thread_rusage()?;
        Some(Self {
            at: Instant::now(),
            run_ns,
            wait_ns,
            user_us: usage.0,
            system_us: usage.1,
            minor_faults: usage.2,
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
            user_fraction: later.user_us.saturating_sub(self.user_us) as f64 * 1e3 / wall_ns,
            system_fraction: later.system_us.saturating_sub(self.system_us) as f64 * 1e3 / wall_ns,
            minor_faults: later.minor_faults.saturating_sub(self.minor_faults),
        })
    }
}

/// The calling thread's minor page faults so far.
pub fn minor_faults() -> Option<u64> {
    thread_rusage().map(|(_, _, faults)| faults)
}

/// The calling thread's (user µs, system µs, minor faults).
fn thread_rusage() -> Option<(u64, u64, u64)> {
    // SAFETY: getrusage writes one plain-data struct we own; zeroed is a valid start.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to that struct, for the duration of the call.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    if rc != 0 {
        return None;
    }
    let us = |t: libc::timeval| {
        u64::try_from(t.tv_sec).unwrap_or(0) * 1_000_000 + u64::try_from(t.tv_usec).unwrap_or(0)
    };
    Some((
        us(usage.ru_utime),
        us(usage.ru_stime),
        u64::try_from(usage.ru_minflt).unwrap_or(0),
    ))
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
