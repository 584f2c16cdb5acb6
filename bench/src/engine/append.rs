//! The append scenarios: partitions on one executor, appender tasks in a closed loop, the
//! latency of every append after the warm-up recorded in microseconds.
//!
//! ```text
//!   appender task (× appenders_per_partition × partitions):
//!     loop { t0 = now; if t0 >= end: stop
//!            Partition::append(batch)      <- validate, queue, group commit, fdatasync
//!            if t0 >= measure_from: record (now - t0), count the batch's bytes }
//!   housekeeping task: every RETENTION_TICK (or the fsync interval, if shorter),
//!     Partition::apply_retention, and with fsync=interval Partition::sync_if_dirty, as a
//!     shard's ticker does
//!   finisher task per partition: finishes a rolled segment off the append path, as a shard does
//! ```
//! Every task goes through `keel_engine::rt`, so a scenario runs on the runtime of whichever
//! backend it is given (glommio for `glommio`, the poll runtime for `uring` and `pwrite`).
//! Throughput is the bytes of the appends that started inside the window, over the time from
//! the window's start to the last of them acknowledged (as the raw probe drains its queue).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use bytes::Bytes;
use hdrhistogram::Histogram;
use keel_engine::batch_cache::BatchCache;
use keel_engine::partition::{Partition, PartitionLimits};
use keel_engine::storage::Storage;
use keel_engine::{rt, EngineConfig, FsyncPolicy, TimestampMs, TopicConfig, TopicPartition};

use super::scenario::{make_batch, AppendScenario, Window};
use super::thread_sched::{SchedSample, SchedShare};
use crate::histogram::new_histogram;
use crate::storage::cpu::CpuSample;

/// How often the retention task runs (the shard's default is 5 s; the bench keeps the disk
/// footprint small at 2 GB/s).
const RETENTION_TICK: Duration = Duration::from_millis(250);

/// The largest append latency kept exactly (60 s); a slower one is recorded as this.
pub const APPEND_LATENCY_US_MAX: u64 = 60_000_000;

/// The log settings every scenario shares.
#[derive(Debug, Clone)]
pub struct LogSettings {
    pub segment_bytes_max: u64,
    /// Closed segments are deleted past this many bytes per partition (keeps the disk use
    /// bounded during a long run).
    pub retention_bytes: u64,
    /// The shard's batch cache.
    pub cache_bytes: usize,
    /// The write path's settings that the storage matrix varies.
    pub tuning: Tuning,
}

/// The partition settings of the write path that `keel-bench storage` sweeps; the defaults
/// are the engine's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuning {
    pub write_bytes_max: usize,
    pub preallocate_bytes: u64,
    pub group_commit: bool,
    /// Deleted segments kept for reuse as new segments (the engine's `segment_spares_max`).
    pub segment_spares_max: usize,
}

impl Default for Tuning {
    fn default() -> Self {
        let defaults = EngineConfig::new(".");
        Self {
            write_bytes_max: defaults.write_bytes_max,
            preallocate_bytes: defaults.preallocate_bytes,
            group_commit: defaults.group_commit,
            segment_spares_max: defaults.segment_spares_max,
        }
    }
}

impl LogSettings {
    /// The topic settings: Kafka's defaults but for the segment size and retention.
    pub fn topic_config(&self) -> TopicConfig {
        TopicConfig {
            segment_bytes_max: self.segment_bytes_max,
            retention_bytes: i64::try_from(self.retention_bytes).unwrap_or(i64::MAX),
            ..TopicConfig::default()
        }
    }
}

/// What one append scenario measured.
#[derive(Debug)]
pub struct AppendMeasurement {
    /// Every measured append, microseconds.
    pub histogram_us: Histogram<u64>,
    pub appends: u64,
    pub bytes: u64,
    /// From the window's start to the last measured acknowledgement.
    pub elapsed: Duration,
    pub window: Window,
    /// Segments the retention task deleted during the scenario.
    pub segments_deleted: usize,
    /// How the executor thread spent the window.
    pub executor: Option<SchedShare>,
    /// CPU time of the process and of each of its threads over the window.
    pub cpu: Option<(CpuSample, CpuSample)>,
}

impl AppendMeasurement {
    /// Decimal megabytes of acknowledged batches per second.
    pub fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
    }
}

#[derive(Debug)]
struct Recorder {
    histogram_us: Histogram<u64>,
    appends: u64,
    bytes: u64,
    last_done: Option<Instant>,
}

/// Opens `count` partitions `bench-0..` in `dir`, sharing one batch cache, as one shard would.
pub async fn open_partitions<S: Storage>(
    storage: &S,
    dir: &Path,
    count: usize,
    fsync: FsyncPolicy,
    log: &LogSettings,
) -> anyhow::Result<Vec<Rc<Partition<S>>>> {
    let mut config = EngineConfig::new(dir);
    config.fsync = fsync;
    config.write_bytes_max = log.tuning.write_bytes_max;
    config.preallocate_bytes = log.tuning.preallocate_bytes;
    config.group_commit = log.tuning.group_commit;
    config.segment_spares_max = log.tuning.segment_spares_max;
    let limits = PartitionLimits::from_config(&config);
    let cache = Rc::new(RefCell::new(BatchCache::new(log.cache_bytes)));
    let mut parts = Vec::with_capacity(count);
    for index in 0..count {
        let tp = TopicPartition::new("bench", i32::try_from(index)?);
        let p = Partition::open(
            storage.clone(),
            tp.clone(),
            dir.join(tp.dir_name()),
            index as u64,
            log.topic_config(),
            limits.clone(),
            Rc::clone(&cache),
        )
        .await
        .with_context(|| format!("opening partition {tp} in {}", dir.display()))?;
        parts.push(Rc::new(p));
    }
    Ok(parts)
}

/// Runs one append scenario in `dir` (which must be fresh) for the warm-up then `duration`.
pub async fn run_append<S: Storage>(
    storage: S,
    dir: &Path,
    scenario: &AppendScenario,
    warmup: Duration,
    duration: Duration,
    log: &LogSettings,
) -> anyhow::Result<AppendMeasurement> {
    storage
        .prepare(dir)
        .await
        .with_context(|| format!("preparing {}", dir.display()))?;
    let parts = open_partitions(&storage, dir, scenario.partitions, scenario.fsync, log).await?;
    let batch = make_batch(scenario.batch_bytes, TimestampMs::now().0);
    let recorder = Rc::new(RefCell::new(Recorder {
        histogram_us: new_histogram(APPEND_LATENCY_US_MAX)?,
        appends: 0,
        bytes: 0,
        last_done: None,
    }));
    let stop = Rc::new(Cell::new(false));
    let deleted = Rc::new(Cell::new(0usize));
    let housekeeping = rt::spawn_local(housekeeping_loop(
        parts.clone(),
        scenario.fsync,
        Rc::clone(&stop),
        Rc::clone(&deleted),
    ));
    let finishers: Vec<_> = parts
        .iter()
        .map(|p| rt::spawn_local(finish_rolled_segments(Rc::clone(p), Rc::clone(&stop))))
        .collect();
    let window = Window::starting_now(warmup, duration);
    let sched_start = rt::spawn_local(async move {
        rt::sleep(
            window
                .measure_from
                .saturating_duration_since(Instant::now()),
        )
        .await;
        (SchedSample::now(), CpuSample::now())
    });
    let mut tasks = Vec::with_capacity(scenario.appenders());
    for p in &parts {
        for _ in 0..scenario.appenders_per_partition {
            let task = appender(Rc::clone(p), batch.clone(), window, Rc::clone(&recorder));
            tasks.push(rt::spawn_local(task));
        }
    }
    let mut first_error = None;
    for task in tasks {
        if let Err(e) = task.await {
            first_error.get_or_insert(e);
        }
    }
    let (sched_end, cpu_end) = (SchedSample::now(), CpuSample::now());
    let (sched_start, cpu_start) = sched_start.await;
    let executor = match (sched_start, sched_end) {
        (Some(start), Some(end)) => start.share_until(&end),
        _ => None,
    };
    stop.set(true);
    housekeeping.await;
    for finisher in finishers {
        finisher.await;
    }
    for p in &parts {
        p.close()
            .await
            .with_context(|| format!("closing {}", p.tp))?;
    }
    if let Some(e) = first_error {
        return Err(e.context(format!("scenario {}", scenario.name)));
    }
    let mut m = finish(&recorder, window, deleted.get(), &scenario.name)?;
    m.executor = executor;
    m.cpu = cpu_start.zip(cpu_end);
    Ok(m)
}

fn finish(
    recorder: &RefCell<Recorder>,
    window: Window,
    segments_deleted: usize,
    name: &str,
) -> anyhow::Result<AppendMeasurement> {
    let r = recorder.replace(Recorder {
        histogram_us: new_histogram(2)?,
        appends: 0,
        bytes: 0,
        last_done: None,
    });
    let last_done = r.last_done.filter(|_| r.appends > 0);
    let Some(last_done) = last_done else {
        anyhow::bail!("{name}: no append completed inside the measured window");
    };
    ensure!(last_done > window.measure_from, "{name}: empty window");
    Ok(AppendMeasurement {
        histogram_us: r.histogram_us,
        appends: r.appends,
        bytes: r.bytes,
        elapsed: last_done - window.measure_from,
        window,
        segments_deleted,
        executor: None,
        cpu: None,
    })
}

async fn appender<S: Storage>(
    p: Rc<Partition<S>>,
    batch: Bytes,
    window: Window,
    recorder: Rc<RefCell<Recorder>>,
) -> anyhow::Result<()> {
    loop {
        let start = Instant::now();
        if start >= window.end {
            return Ok(());
        }
        p.append(&batch)
            .await
            .with_context(|| format!("append to {}", p.tp))?;
        let done = Instant::now();
        if start >= window.measure_from {
            let mut r = recorder.borrow_mut();
            let us = u64::try_from((done - start).as_micros()).unwrap_or(u64::MAX);
            r.histogram_us.saturating_record(us.max(1));
            r.appends += 1;
            r.bytes += batch.len() as u64;
            r.last_done = Some(done);
        }
    }
}

/// Retention, and the fsync=interval sync, as a shard's ticker runs them.
async fn housekeeping_loop<S: Storage>(
    parts: Vec<Rc<Partition<S>>>,
    fsync: FsyncPolicy,
    stop: Rc<Cell<bool>>,
    deleted: Rc<Cell<usize>>,
) {
    let tick = match fsync {
        FsyncPolicy::IntervalMs(ms) => Duration::from_millis(ms.max(1)).min(RETENTION_TICK),
        _ => RETENTION_TICK,
    };
    let mut since_retention = Duration::ZERO;
    while !stop.get() {
        rt::sleep(tick).await;
        since_retention += tick;
        for p in &parts {
            if matches!(fsync, FsyncPolicy::IntervalMs(_)) {
                if let Err(e) = p.sync_if_dirty().await {
                    tracing::warn!(partition = %p.tp, error = %e, "interval fsync failed");
                }
            }
            if since_retention < RETENTION_TICK {
                continue;
            }
            match p.apply_retention(TimestampMs::now().0).await {
                Ok(n) => deleted.set(deleted.get() + n),
                Err(e) => tracing::warn!(partition = %p.tp, error = %e, "retention failed"),
            }
        }
        if since_retention >= RETENTION_TICK {
            since_retention = Duration::ZERO;
        }
    }
}

/// How often an idle finisher looks at `stop` (it wakes at once for a roll).
const FINISHER_STOP_POLL: Duration = Duration::from_millis(50);

/// Finishes each rolled segment (exact length, sync, indexes) off the append path, as a
/// shard's background task does, until `stop`.
async fn finish_rolled_segments<S: Storage>(p: Rc<Partition<S>>, stop: Rc<Cell<bool>>) {
    while !stop.get() {
        let listener = p.listen_housekeeping();
        if p.has_unfinished() {
            // A failure is logged by the partition and makes it read-only; the appenders
            // then fail and the scenario reports it.
            let _ = p.finish_rolled().await;
            continue;
        }
        // Whichever comes first: a roll, or the time to look at `stop` again.
        let mut listener = std::pin::pin!(listener);
        let mut sleep = std::pin::pin!(rt::sleep(FINISHER_STOP_POLL));
        std::future::poll_fn(|cx| {
            if listener.as_mut().poll(cx).is_ready() || sleep.as_mut().poll(cx).is_ready() {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        })
        .await;
    }
}
