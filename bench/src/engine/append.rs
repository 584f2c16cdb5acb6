//! The append scenarios: partitions on one executor, appender tasks in a closed loop, the
//! latency of every append after the warm-up recorded in microseconds.
//!
//! ```text
//!   appender task (× appenders_per_partition × partitions):
//!     loop { t0 = now; if t0 >= end: stop
//!            Partition::append(batch)      <- validate, queue, group commit, fdatasync
//!            if t0 >= measure_from: record (now - t0), count the batch's bytes }
//!   retention task: every RETENTION_TICK, Partition::apply_retention, as a shard's ticker does
//! ```
//! Throughput is the bytes of the appends that started inside the window, over the time from
//! the window's start to the last of them acknowledged (as the raw probe drains its queue).

use std::cell::{Cell, RefCell};
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use bytes::Bytes;
use hdrhistogram::Histogram;
use keel_engine::batch_cache::BatchCache;
use keel_engine::partition::{Partition, PartitionLimits};
use keel_engine::storage::Storage;
use keel_engine::{EngineConfig, FsyncPolicy, TimestampMs, TopicConfig, TopicPartition};

use super::scenario::{make_batch, AppendScenario, Window};
use super::thread_sched::{SchedSample, SchedShare};
use crate::histogram::new_histogram;

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
    let retention = glommio::spawn_local(retention_loop(
        parts.clone(),
        Rc::clone(&stop),
        Rc::clone(&deleted),
    ));
    let window = Window::starting_now(warmup, duration);
    let sched_start = glommio::spawn_local(async move {
        glommio::timer::sleep(
            window
                .measure_from
                .saturating_duration_since(Instant::now()),
        )
        .await;
        SchedSample::now()
    });
    let mut tasks = Vec::with_capacity(scenario.appenders());
    for p in &parts {
        for _ in 0..scenario.appenders_per_partition {
            let task = appender(Rc::clone(p), batch.clone(), window, Rc::clone(&recorder));
            tasks.push(glommio::spawn_local(task));
        }
    }
    let mut first_error = None;
    for task in tasks {
        if let Err(e) = task.await {
            first_error.get_or_insert(e);
        }
    }
    let sched_end = SchedSample::now();
    let executor = match (sched_start.await, sched_end) {
        (Some(start), Some(end)) => start.share_until(&end),
        _ => None,
    };
    stop.set(true);
    retention.await;
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

async fn retention_loop<S: Storage>(
    parts: Vec<Rc<Partition<S>>>,
    stop: Rc<Cell<bool>>,
    deleted: Rc<Cell<usize>>,
) {
    while !stop.get() {
        glommio::timer::sleep(RETENTION_TICK).await;
        for p in &parts {
            match p.apply_retention(TimestampMs::now().0).await {
                Ok(n) => deleted.set(deleted.get() + n),
                Err(e) => tracing::warn!(partition = %p.tp, error = %e, "retention failed"),
            }
        }
    }
}
