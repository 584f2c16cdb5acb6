//! Shards: one executor per core, each the only owner of its partitions. Executors, timers and
//! tasks come from the runtime seam ([`crate::rt`]); the runtime is the one the configured
//! I/O backend runs on.
//!
//! A caller on any shard holds a [`Shard`] handle. For a partition owned elsewhere, the handle
//! sends a [`ShardMsg`] to the owner over a bounded channel (`futures` mpsc: runtime-agnostic,
//! many senders to one receiver, woken across threads through glommio's foreign wakers) and
//! awaits a oneshot reply. Record batches travel inside as `Bytes`: the pointer moves, the
//! bytes do not. A sender finding the owner's queue full (`shard_queue_max`) waits.

use std::{
    cell::RefCell,
    collections::HashMap,
    future::Future,
    path::PathBuf,
    rc::Rc,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures::{
    channel::{mpsc, oneshot},
    SinkExt, StreamExt,
};

use crate::{
    batch_cache::BatchCache,
    catalog::{validate_topic_name, Catalog, CatalogState, PartitionMeta, TopicMeta},
    config::{EngineConfig, FsyncPolicy, TopicOverrides, SEGMENT_BYTES_MIN},
    error::{EngineError, Result},
    partition::{AppendOutcome, Partition, PartitionLimits, PartitionOffsets, ReadOutcome},
    rt,
    storage::{AnyStorage, Storage},
    types::{Offset, TimestampMs, TopicPartition},
};

/// Where ListOffsets points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The log start offset.
    Earliest,
    /// The high watermark.
    Latest,
    /// The first batch with a timestamp at or after this (ms).
    Timestamp(i64),
    /// The batch with the largest timestamp.
    MaxTimestamp,
}

type Reply<T> = oneshot::Sender<Result<T>>;

/// A request for the shard that owns a partition.
#[derive(Debug)]
pub enum ShardMsg {
    /// Append batches.
    Append(
        TopicPartition,
        Bytes,
        Option<oneshot::Sender<()>>,
        Reply<AppendOutcome>,
    ),
    /// Read from an offset.
    Read(TopicPartition, Offset, usize, Reply<ReadOutcome>),
    /// Wait until the high watermark passes an offset, or a deadline.
    Wait(TopicPartition, Offset, Instant, Reply<()>),
    /// A partition's offsets.
    Offsets(TopicPartition, Reply<PartitionOffsets>),
    /// ListOffsets.
    ListOffset(TopicPartition, OffsetSpec, Reply<(Offset, i64)>),
    /// Open the partitions of a topic this shard owns (after create).
    OpenTopic(String, Reply<()>),
    /// Close and delete this shard's partitions of a deleted topic.
    DropTopic(String, Reply<()>),
    /// Delete a partition's closed segments below an offset.
    DeleteBefore(TopicPartition, Offset, Reply<usize>),
    /// Run a job of the engine's user on this shard ([`Shard::run_on`]).
    Run(Job),
}

/// A closure sent to a shard that builds a future local to it. The closure is `Send`; the
/// future it makes need not be, so it may use the shard's own (`Rc`, `RefCell`) state.
pub struct Job(Box<dyn FnOnce() -> std::pin::Pin<Box<dyn Future<Output = ()>>> + Send>);

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Job")
    }
}

/// State shared by every shard.
#[derive(Debug)]
pub struct EngineShared {
    /// The engine settings.
    pub config: EngineConfig,
    /// The catalog.
    pub catalog: Catalog,
    senders: Vec<mpsc::Sender<ShardMsg>>,
    mains_running: AtomicUsize,
    shards_ready: AtomicUsize,
    failed: std::sync::atomic::AtomicBool,
}

struct Local<S: Storage> {
    storage: S,
    partitions: RefCell<HashMap<TopicPartition, Rc<Partition<S>>>>,
    cache: Rc<RefCell<BatchCache>>,
    opening: async_lock::Mutex<()>,
}

/// A shard's handle on the engine. Cheap to clone within its shard; not `Send`.
pub struct Shard<S: Storage = AnyStorage> {
    id: usize,
    shared: Arc<EngineShared>,
    local: Rc<Local<S>>,
}

impl<S: Storage> Clone for Shard<S> {
    fn clone(&self) -> Self {
        Shard {
            id: self.id,
            shared: Arc::clone(&self.shared),
            local: Rc::clone(&self.local),
        }
    }
}

impl<S: Storage> std::fmt::Debug for Shard<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shard")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Starts the engine on the configured I/O backend (`config.io_backend`): one executor per
/// shard, each recovers its partitions, then runs `main` with its [`Shard`]. Returns when
/// every `main` has returned and every partition was closed cleanly.
///
/// # Errors
/// A catalog that cannot be loaded, an executor or backend that cannot start, or a partition
/// that cannot be recovered or closed.
pub fn run<F, Fut>(config: EngineConfig, main: F) -> Result<()>
where
    F: Fn(Shard<AnyStorage>) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let backend = config.io_backend;
    let mut options = config.backend_options;
    // A linked fdatasync after every write only pays when every write is synced.
    options.uring.linked_sync &= config.fsync == FsyncPolicy::Always;
    run_with(config, move || AnyStorage::new(backend, &options), main)
}

/// [`run`] with a storage made per shard, on the shard's thread, by `make_storage`; the
/// executors run the runtime of `config.io_backend`.
///
/// # Errors
/// As [`run`].
pub fn run_with<S, M, F, Fut>(config: EngineConfig, make_storage: M, main: F) -> Result<()>
where
    S: Storage,
    M: Fn() -> std::io::Result<S> + Send + Sync + Clone + 'static,
    F: Fn(Shard<S>) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = ()> + 'static,
{
    assert!(config.shards > 0, "at least one shard");
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| EngineError::io("mkdir", &config.data_dir, e))?;
    let catalog = Catalog::load(&config.data_dir)?;
    remove_orphans(&config.data_dir, &catalog.snapshot())?;
    let mut senders = Vec::new();
    let mut receivers = Vec::new();
    for _ in 0..config.shards {
        let (tx, rx) = mpsc::channel(config.shard_queue_max);
        senders.push(tx);
        receivers.push(rx);
    }
    let shared = Arc::new(EngineShared {
        mains_running: AtomicUsize::new(config.shards),
        shards_ready: AtomicUsize::new(0),
        failed: std::sync::atomic::AtomicBool::new(false),
        config,
        catalog,
        senders,
    });
    let cores = core_ids();
    let runtime = shared.config.io_backend.runtime();
    let mut handles = Vec::new();
    for (id, rx) in receivers.into_iter().enumerate() {
        let spec = rt::ExecutorSpec {
            name: format!("keel-shard-{id}"),
            cpu: shared.config.pin_cores.then(|| cores[id % cores.len()]),
            io_memory_bytes: shared.config.io_memory_bytes,
            ring_depth: shared.config.ring_depth,
        };
        let (shared, make_storage, main) =
            (Arc::clone(&shared), make_storage.clone(), main.clone());
        let handle = rt::spawn_executor(runtime, &spec, move || async move {
            // A panicking shard must not leave the others waiting for it forever: catch
            // it, mark the engine failed (every wait below gives up), and report it.
            let storage = match make_storage() {
                Ok(s) => s,
                Err(e) => {
                    shared.failed.store(true, Ordering::Release);
                    return Err(EngineError::io("start storage", &shared.config.data_dir, e));
                }
            };
            let run = shard_main(id, Arc::clone(&shared), storage, rx, main);
            match futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(run)).await {
                Ok(result) => result,
                Err(_) => {
                    shared.failed.store(true, Ordering::Release);
                    Err(EngineError::ShardFailed(id))
                }
            }
        })
        .map_err(|e| EngineError::io("start executor", PathBuf::new(), e))?;
        handles.push(handle);
    }
    let mut first_err = None;
    for h in handles {
        let r = h
            .join()
            .map_err(|e| EngineError::io("join executor", PathBuf::new(), e));
        if let Err(e) = r.and_then(|r| r) {
            // A shard that stopped because another failed (`ShardFailed(usize::MAX)`) is not
            // the cause: report the shard that failed, whichever order they are joined in.
            let generic = |e: &EngineError| matches!(e, EngineError::ShardFailed(usize::MAX));
            if first_err
                .as_ref()
                .is_none_or(|f| generic(f) && !generic(&e))
            {
                first_err = Some(e);
            }
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// The CPUs this process may run on (its affinity mask), in order; `[0]` when the mask cannot
/// be read. Shards are pinned to these; keel-bench checks its default pin against them.
#[must_use]
pub fn core_ids() -> Vec<usize> {
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: sched_getaffinity writes at most size_of::<cpu_set_t>() bytes into `set`.
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &raw mut set) };
    let ids: Vec<usize> = if rc == 0 {
        // SAFETY: `set` was filled by the kernel above.
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
            .collect()
    } else {
        Vec::new()
    };
    if ids.is_empty() {
        vec![0]
    } else {
        ids
    }
}

/// Removes partition directories that the catalog does not list (a crash during a delete).
fn remove_orphans(data_dir: &std::path::Path, catalog: &CatalogState) -> Result<()> {
    let entries = std::fs::read_dir(data_dir).map_err(|e| EngineError::io("list", data_dir, e))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "catalog" || !entry.path().is_dir() {
            continue;
        }
        let known = name
            .rsplit_once('-')
            .and_then(|(t, p)| p.parse::<i32>().ok().map(|p| catalog.owner(t, p).is_some()))
            .unwrap_or(false);
        if !known {
            tracing::warn!(dir = %entry.path().display(), "removing partition directory not in the catalog");
            std::fs::remove_dir_all(entry.path())
                .map_err(|e| EngineError::io("remove", entry.path(), e))?;
        }
    }
    Ok(())
}

async fn shard_main<S, F, Fut>(
    id: usize,
    shared: Arc<EngineShared>,
    storage: S,
    rx: mpsc::Receiver<ShardMsg>,
    main: F,
) -> Result<()>
where
    S: Storage,
    F: Fn(Shard<S>) -> Fut,
    Fut: Future<Output = ()>,
{
    let local = Rc::new(Local {
        storage,
        partitions: RefCell::new(HashMap::new()),
        opening: async_lock::Mutex::new(()),
        cache: Rc::new(RefCell::new(BatchCache::new(
            shared.config.batch_cache_bytes_max,
        ))),
    });
    let shard = Shard { id, shared, local };
    let recovered = match shard
        .local
        .storage
        .prepare(&shard.shared.config.data_dir)
        .await
    {
        Ok(()) => shard.open_owned_partitions().await,
        Err(e) => Err(EngineError::io(
            "prepare storage",
            &shard.shared.config.data_dir,
            e,
        )),
    };
    // Every shard recovers before any serves: the broker is ready only when all data is. If
    // any shard fails to recover (or panics), none starts.
    if recovered.is_err() {
        shard.shared.failed.store(true, Ordering::Release);
    }
    shard.shared.shards_ready.fetch_add(1, Ordering::AcqRel);
    while shard.shared.shards_ready.load(Ordering::Acquire) < shard.shard_count()
        && !shard.engine_failed()
    {
        rt::sleep(Duration::from_millis(1)).await;
    }
    recovered?;
    if shard.engine_failed() {
        return Err(EngineError::ShardFailed(usize::MAX));
    }
    let server = rt::spawn_local(serve(shard.clone(), rx)).detach();
    let ticker = rt::spawn_local(tick(shard.clone())).detach();
    main(shard.clone()).await;
    shard.shared.mains_running.fetch_sub(1, Ordering::AcqRel);
    // Keep answering other shards until every main has returned (or one shard died).
    while shard.shared.mains_running.load(Ordering::Acquire) > 0 && !shard.engine_failed() {
        rt::sleep(Duration::from_millis(2)).await;
    }
    ticker.cancel();
    let result = shard.close_all().await;
    server.cancel();
    result
}

async fn serve<S: Storage>(shard: Shard<S>, mut rx: mpsc::Receiver<ShardMsg>) {
    while let Some(msg) = rx.next().await {
        let shard = shard.clone();
        rt::spawn_local(async move { shard.handle(msg).await }).detach();
    }
}

/// A partition's background work: finishing the segment a roll left (exact length, sync,
/// indexes) off the append path. Ends when the partition is closed or dropped.
async fn finish_rolled_segments<S: Storage>(part: std::rc::Weak<Partition<S>>) {
    loop {
        let Some(p) = part.upgrade() else { return };
        if p.is_closed() {
            return;
        }
        let listener = p.listen_housekeeping();
        if p.has_unfinished() {
            // A failure is logged and makes the partition read-only.
            let _ = p.finish_rolled().await;
            continue;
        }
        drop(p);
        // Also wake now and then to notice a dropped partition.
        let sleep = std::pin::pin!(rt::sleep(Duration::from_secs(1)));
        futures::future::select(listener, sleep).await;
    }
}

async fn tick<S: Storage>(shard: Shard<S>) {
    let config = &shard.shared.config;
    let period = match config.fsync {
        FsyncPolicy::IntervalMs(ms) => ms.min(config.retention_check_ms),
        _ => config.retention_check_ms,
    };
    let mut since_retention = 0u64;
    loop {
        rt::sleep(Duration::from_millis(period.max(1))).await;
        since_retention += period;
        let parts: Vec<_> = shard.local.partitions.borrow().values().cloned().collect();
        for p in &parts {
            if matches!(config.fsync, FsyncPolicy::IntervalMs(_)) {
                if let Err(e) = p.sync_if_dirty().await {
                    tracing::error!(partition = %p.tp, error = %e, "interval fsync failed");
                }
            }
            if since_retention >= config.retention_check_ms {
                if let Err(e) = p.apply_retention(TimestampMs::now().0).await {
                    tracing::error!(partition = %p.tp, error = %e, "retention failed");
                }
            }
        }
        if since_retention >= config.retention_check_ms {
            since_retention = 0;
        }
    }
}

impl<S: Storage> Shard<S> {
    /// This shard's index.
    #[must_use]
    pub fn id(&self) -> usize {
        self.id
    }

    /// Whether a shard failed to start or panicked: the engine is going down.
    #[must_use]
    pub fn engine_failed(&self) -> bool {
        self.shared.failed.load(Ordering::Acquire)
    }

    /// How many shards there are.
    #[must_use]
    pub fn shard_count(&self) -> usize {
        self.shared.config.shards
    }

    /// The engine settings.
    #[must_use]
    pub fn config(&self) -> &EngineConfig {
        &self.shared.config
    }

    /// A snapshot of the catalog.
    #[must_use]
    pub fn catalog(&self) -> Arc<CatalogState> {
        self.shared.catalog.snapshot()
    }

    async fn open_owned_partitions(&self) -> Result<()> {
        let cat = self.catalog();
        for t in cat.topics.values() {
            self.open_topic(t).await?;
        }
        Ok(())
    }

    async fn open_topic(&self, t: &TopicMeta) -> Result<()> {
        // One open (or drop) at a time per shard, so a partition is never opened twice.
        let _opening = self.local.opening.lock().await;
        let config = t.overrides.apply(&self.shared.config.topic_defaults);
        for p in t
            .partitions
            .iter()
            .filter(|p| p.owner_shard as usize == self.id)
        {
            let tp = TopicPartition::new(&t.name, p.index);
            if self.local.partitions.borrow().contains_key(&tp) {
                continue;
            }
            let dir = self.shared.config.data_dir.join(tp.dir_name());
            let part = Partition::open(
                self.local.storage.clone(),
                tp.clone(),
                dir,
                p.uid,
                config.clone(),
                PartitionLimits::from_config(&self.shared.config),
                Rc::clone(&self.local.cache),
            )
            .await?;
            let part = Rc::new(part);
            rt::spawn_local(finish_rolled_segments(Rc::downgrade(&part))).detach();
            self.local.partitions.borrow_mut().insert(tp, part);
        }
        Ok(())
    }

    async fn close_all(&self) -> Result<()> {
        let parts: Vec<_> = self
            .local
            .partitions
            .borrow_mut()
            .drain()
            .map(|(_, p)| p)
            .collect();
        let mut first_err = None;
        for p in parts {
            if let Err(e) = p.close().await {
                tracing::error!(partition = %p.tp, error = %e, "close failed");
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    fn owner(&self, tp: &TopicPartition) -> Result<PartitionMeta> {
        self.catalog()
            .owner(&tp.topic, tp.partition)
            .cloned()
            .ok_or_else(|| EngineError::UnknownTopicOrPartition(tp.to_string()))
    }

    async fn local_partition(&self, tp: &TopicPartition) -> Result<Rc<Partition<S>>> {
        if let Some(p) = self.local.partitions.borrow().get(tp).cloned() {
            return Ok(p);
        }
        // A partition created a moment ago is in the catalog before its owner has opened it
        // (create_topic publishes, then asks the owners): open it now rather than refuse.
        let unknown = || EngineError::UnknownTopicOrPartition(tp.to_string());
        let cat = self.catalog();
        let meta = cat.topics.get(&*tp.topic).ok_or_else(unknown)?;
        if cat
            .owner(&tp.topic, tp.partition)
            .is_none_or(|p| p.owner_shard as usize != self.id)
        {
            return Err(unknown());
        }
        self.open_topic(meta).await?;
        self.local
            .partitions
            .borrow()
            .get(tp)
            .cloned()
            .ok_or_else(unknown)
    }

    async fn ask<T>(&self, owner: usize, make: impl FnOnce(Reply<T>) -> ShardMsg) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        let mut sender = self.shared.senders[owner].clone();
        sender
            .send(make(tx))
            .await
            .map_err(|_| EngineError::ShuttingDown)?;
        rx.await.map_err(|_| EngineError::ShuttingDown)?
    }

    /// Runs `make` on shard `target` and the future it builds there, and returns its output
    /// here. This is the seam for state that the engine's user keeps on one shard (the
    /// broker's group coordinators): the closure and the output cross threads, the future
    /// stays on `target` and may borrow its local state. On this shard it simply runs.
    ///
    /// # Errors
    /// `target` is not a shard, or the engine is shutting down.
    pub async fn run_on<T, F, Fut>(&self, target: usize, make: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
    {
        if target == self.id {
            return Ok(make().await);
        }
        if target >= self.shard_count() {
            return Err(EngineError::ShardFailed(target));
        }
        self.ask(target, move |reply: Reply<T>| {
            ShardMsg::Run(Job(Box::new(move || {
                Box::pin(async move {
                    let _ = reply.send(Ok(make().await));
                })
            })))
        })
        .await
    }

    /// Deletes a partition's closed segments that hold only offsets below `offset` (after
    /// their records were rewritten further on, as a compacted topic's owner does); the log
    /// start moves to the first segment kept. Returns how many segments went.
    pub async fn delete_before(&self, tp: &TopicPartition, offset: Offset) -> Result<usize> {
        let owner = self.owner(tp)?.owner_shard as usize;
        if owner == self.id {
            return self.local_partition(tp).await?.delete_before(offset).await;
        }
        self.ask(owner, |r| ShardMsg::DeleteBefore(tp.clone(), offset, r))
            .await
    }

    /// Appends the batches in `records` to a partition (on its owner shard).
    pub async fn append(&self, tp: &TopicPartition, records: Bytes) -> Result<AppendOutcome> {
        self.append_notify(tp, records, None).await
    }

    /// [`Shard::append`], telling `enqueued` once the batches have their offsets and their
    /// place in the owner's write queue, before they are durable: an append to the same
    /// partition started after that signal is ordered after this one. The broker uses it to
    /// work on the next request of a connection while this one waits for its fdatasync.
    /// A failure before that point drops the sender.
    pub async fn append_notify(
        &self,
        tp: &TopicPartition,
        records: Bytes,
        enqueued: Option<oneshot::Sender<()>>,
    ) -> Result<AppendOutcome> {
        let owner = self.owner(tp)?.owner_shard as usize;
        if owner == self.id {
            return self
                .local_partition(tp)
                .await?
                .append_notify(&records, enqueued)
                .await;
        }
        self.ask(owner, |r| {
            ShardMsg::Append(tp.clone(), records, enqueued, r)
        })
        .await
    }

    /// Reads whole batches from `offset`, up to `max_bytes` (bounded by `read_bytes_max`).
    pub async fn read(
        &self,
        tp: &TopicPartition,
        offset: Offset,
        max_bytes: usize,
    ) -> Result<ReadOutcome> {
        let max_bytes = max_bytes.min(self.shared.config.read_bytes_max);
        let owner = self.owner(tp)?.owner_shard as usize;
        if owner == self.id {
            return self
                .local_partition(tp)
                .await?
                .read(offset, max_bytes)
                .await;
        }
        self.ask(owner, |r| ShardMsg::Read(tp.clone(), offset, max_bytes, r))
            .await
    }

    /// Waits until the partition's high watermark is past `offset`, or until `deadline`.
    pub async fn wait_for_data(
        &self,
        tp: &TopicPartition,
        offset: Offset,
        deadline: Instant,
    ) -> Result<()> {
        let owner = self.owner(tp)?.owner_shard as usize;
        if owner == self.id {
            return self.wait_local(tp, offset, deadline).await;
        }
        self.ask(owner, |r| ShardMsg::Wait(tp.clone(), offset, deadline, r))
            .await
    }

    async fn wait_local(
        &self,
        tp: &TopicPartition,
        offset: Offset,
        deadline: Instant,
    ) -> Result<()> {
        let p = self.local_partition(tp).await?;
        loop {
            let listener = p.listen();
            if p.offsets().high_watermark > offset || p.failed().is_some() {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(());
            }
            let sleep = std::pin::pin!(rt::sleep(deadline - now));
            if let futures::future::Either::Right(_) =
                futures::future::select(listener, sleep).await
            {
                return Ok(());
            }
        }
    }

    /// A partition's offsets.
    pub async fn offsets(&self, tp: &TopicPartition) -> Result<PartitionOffsets> {
        let owner = self.owner(tp)?.owner_shard as usize;
        if owner == self.id {
            return Ok(self.local_partition(tp).await?.offsets());
        }
        self.ask(owner, |r| ShardMsg::Offsets(tp.clone(), r)).await
    }

    /// ListOffsets: (offset, timestamp); timestamp -1 where Kafka gives none. For a timestamp
    /// past every batch, the offset is -1, as in Kafka.
    pub async fn list_offset(
        &self,
        tp: &TopicPartition,
        spec: OffsetSpec,
    ) -> Result<(Offset, i64)> {
        let owner = self.owner(tp)?.owner_shard as usize;
        if owner == self.id {
            return self.list_offset_local(tp, spec).await;
        }
        self.ask(owner, |r| ShardMsg::ListOffset(tp.clone(), spec, r))
            .await
    }

    async fn list_offset_local(
        &self,
        tp: &TopicPartition,
        spec: OffsetSpec,
    ) -> Result<(Offset, i64)> {
        let p = self.local_partition(tp).await?;
        let o = p.offsets();
        match spec {
            OffsetSpec::Earliest => Ok((o.log_start, -1)),
            OffsetSpec::Latest => Ok((o.high_watermark, -1)),
            OffsetSpec::Timestamp(ts) => {
                Ok(p.offset_for_time(ts).await?.unwrap_or((Offset(-1), -1)))
            }
            OffsetSpec::MaxTimestamp => {
                // The first batch reaching the partition's largest timestamp.
                match p.offset_for_time(i64::MIN).await? {
                    None => Ok((Offset(-1), -1)),
                    Some(_) => {
                        let mut best = (Offset(-1), -1);
                        let mut ts = i64::MIN;
                        while let Some(found) = p.offset_for_time(ts).await? {
                            best = found;
                            if found.1 == i64::MAX {
                                break;
                            }
                            ts = found.1 + 1;
                        }
                        Ok(best)
                    }
                }
            }
        }
    }

    async fn handle(&self, msg: ShardMsg) {
        match msg {
            ShardMsg::Append(tp, records, enqueued, reply) => {
                let r = match self.local_partition(&tp).await {
                    Ok(p) => p.append_notify(&records, enqueued).await,
                    Err(e) => Err(e),
                };
                let _ = reply.send(r);
            }
            ShardMsg::Read(tp, offset, max, reply) => {
                let r = match self.local_partition(&tp).await {
                    Ok(p) => p.read(offset, max).await,
                    Err(e) => Err(e),
                };
                let _ = reply.send(r);
            }
            ShardMsg::Wait(tp, offset, deadline, mut reply) => {
                // The asker may stop waiting first (another partition had data): then stop too.
                let wait = std::pin::pin!(self.wait_local(&tp, offset, deadline));
                let cancelled = std::pin::pin!(reply.cancellation());
                if let futures::future::Either::Left((r, _)) =
                    futures::future::select(wait, cancelled).await
                {
                    let _ = reply.send(r);
                }
            }
            ShardMsg::Offsets(tp, reply) => {
                let _ = reply.send(self.local_partition(&tp).await.map(|p| p.offsets()));
            }
            ShardMsg::ListOffset(tp, spec, reply) => {
                let _ = reply.send(self.list_offset_local(&tp, spec).await);
            }
            ShardMsg::OpenTopic(name, reply) => {
                let r = match self.catalog().topics.get(&name) {
                    Some(t) => self.open_topic(t).await,
                    None => Err(EngineError::UnknownTopicOrPartition(name)),
                };
                let _ = reply.send(r);
            }
            ShardMsg::DropTopic(name, reply) => {
                let _ = reply.send(self.drop_topic_local(&name).await);
            }
            ShardMsg::DeleteBefore(tp, offset, reply) => {
                let r = match self.local_partition(&tp).await {
                    Ok(p) => p.delete_before(offset).await,
                    Err(e) => Err(e),
                };
                let _ = reply.send(r);
            }
            ShardMsg::Run(job) => (job.0)().await,
        }
    }

    async fn on_all_shards(
        &self,
        make: impl Fn(Reply<()>) -> ShardMsg,
        local: impl AsyncFnOnce() -> Result<()>,
    ) -> Result<()> {
        let mut first_err = None;
        for owner in (0..self.shard_count()).filter(|&s| s != self.id) {
            if let Err(e) = self.ask(owner, &make).await {
                first_err.get_or_insert(e);
            }
        }
        if let Err(e) = local().await {
            first_err.get_or_insert(e);
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Creates a topic with `partitions` partitions spread over the shards. With
    /// `validate_only`, checks everything and changes nothing.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        overrides: TopicOverrides,
        validate_only: bool,
    ) -> Result<Arc<TopicMeta>> {
        validate_topic_name(name)?;
        self.validate_overrides(&overrides)?;
        let config = &self.shared.config;
        let count = usize::try_from(partitions)
            .ok()
            .filter(|n| *n > 0 && *n <= config.partitions_per_topic_max)
            .ok_or_else(|| {
                EngineError::InvalidPartitions(format!(
                    "{partitions} partitions: must be 1 to partitions_per_topic_max {}",
                    config.partitions_per_topic_max
                ))
            })?;
        let shards = self.shard_count();
        let (topics_max, partitions_max) = (config.topics_max, config.partitions_max);
        let build = |cat: &mut CatalogState| -> Result<Arc<TopicMeta>> {
            if cat.topics.contains_key(name) {
                return Err(EngineError::TopicAlreadyExists(name.to_string()));
            }
            if cat.topics.len() >= topics_max {
                return Err(EngineError::LimitReached(format!(
                    "topics_max {topics_max}"
                )));
            }
            if cat.partition_count() + count > partitions_max {
                return Err(EngineError::LimitReached(format!(
                    "partitions_max {partitions_max}"
                )));
            }
            let mut meta = TopicMeta {
                name: name.to_string(),
                id: *uuid::Uuid::new_v4().as_bytes(),
                partitions: Vec::new(),
                overrides: overrides.clone(),
            };
            add_partitions(cat, &mut meta, count, shards);
            let meta = Arc::new(meta);
            cat.topics.insert(name.to_string(), Arc::clone(&meta));
            Ok(meta)
        };
        if validate_only {
            let mut copy = (*self.catalog()).clone();
            return build(&mut copy);
        }
        let meta = self.shared.catalog.update(build)?;
        let topic = name.to_string();
        self.on_all_shards(
            |r| ShardMsg::OpenTopic(topic.clone(), r),
            async || self.open_topic(&meta).await,
        )
        .await?;
        Ok(meta)
    }

    fn validate_overrides(&self, o: &TopicOverrides) -> Result<()> {
        if o.segment_bytes_max.is_some_and(|b| b < SEGMENT_BYTES_MIN) {
            return Err(EngineError::InvalidConfig(format!(
                "segment.bytes must be at least {SEGMENT_BYTES_MIN}"
            )));
        }
        if o.segment_bytes_max.is_some_and(|b| b > u64::from(u32::MAX)) {
            return Err(EngineError::InvalidConfig(
                "segment.bytes must fit 32 bits (index positions)".into(),
            ));
        }
        if o.retention_ms.is_some_and(|v| v < -1) || o.retention_bytes.is_some_and(|v| v < -1) {
            return Err(EngineError::InvalidConfig(
                "retention must be -1 (unlimited) or positive".into(),
            ));
        }
        if o.segment_ms.is_some_and(|v| v == 0) || o.index_interval_bytes.is_some_and(|v| v == 0) {
            return Err(EngineError::InvalidConfig(
                "segment.ms and index.interval.bytes must be positive".into(),
            ));
        }
        Ok(())
    }

    /// Grows a topic to `total` partitions.
    pub async fn create_partitions(
        &self,
        name: &str,
        total: i32,
        validate_only: bool,
    ) -> Result<()> {
        let shards = self.shard_count();
        let config = &self.shared.config;
        let (per_topic_max, partitions_max) =
            (config.partitions_per_topic_max, config.partitions_max);
        let grow = |cat: &mut CatalogState| -> Result<()> {
            let t = cat
                .topics
                .get(name)
                .ok_or_else(|| EngineError::UnknownTopicOrPartition(name.to_string()))?;
            let now = t.partitions.len();
            let total = usize::try_from(total).unwrap_or(0);
            if total <= now {
                return Err(EngineError::InvalidPartitions(format!(
                    "topic {name} has {now} partitions; the new count must be larger"
                )));
            }
            if total > per_topic_max || cat.partition_count() + total - now > partitions_max {
                return Err(EngineError::InvalidPartitions(format!(
                    "{total} partitions is past partitions_per_topic_max or partitions_max"
                )));
            }
            let mut meta = (**t).clone();
            add_partitions(cat, &mut meta, total - now, shards);
            cat.topics.insert(name.to_string(), Arc::new(meta));
            Ok(())
        };
        if validate_only {
            let mut copy = (*self.catalog()).clone();
            return grow(&mut copy);
        }
        self.shared.catalog.update(grow)?;
        let meta = self
            .catalog()
            .topics
            .get(name)
            .cloned()
            .ok_or_else(|| EngineError::UnknownTopicOrPartition(name.to_string()))?;
        let topic = name.to_string();
        self.on_all_shards(
            |r| ShardMsg::OpenTopic(topic.clone(), r),
            async || self.open_topic(&meta).await,
        )
        .await
    }

    /// Deletes a topic: removes it from the catalog, then every owner closes its partitions
    /// and deletes their files.
    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        self.shared.catalog.update(|cat| {
            cat.topics
                .remove(name)
                .map(|_| ())
                .ok_or_else(|| EngineError::UnknownTopicOrPartition(name.to_string()))
        })?;
        let topic = name.to_string();
        self.on_all_shards(
            |r| ShardMsg::DropTopic(topic.clone(), r),
            async || self.drop_topic_local(name).await,
        )
        .await
    }

    async fn drop_topic_local(&self, name: &str) -> Result<()> {
        let _opening = self.local.opening.lock().await;
        let gone: Vec<_> = {
            let mut parts = self.local.partitions.borrow_mut();
            let keys: Vec<_> = parts
                .keys()
                .filter(|tp| &*tp.topic == name)
                .cloned()
                .collect();
            keys.into_iter().filter_map(|k| parts.remove(&k)).collect()
        };
        for p in gone {
            let _ = p.close().await;
            p.forget_cache();
            self.local
                .storage
                .remove_dir_all(p.dir())
                .map_err(|e| EngineError::io("remove", p.dir(), e))?;
        }
        Ok(())
    }

    /// Changes a topic's overrides (IncrementalAlterConfigs); owners apply them at once.
    pub fn alter_topic_config(&self, name: &str, overrides: TopicOverrides) -> Result<()> {
        self.validate_overrides(&overrides)?;
        self.shared.catalog.update(|cat| {
            let t = cat
                .topics
                .get(name)
                .ok_or_else(|| EngineError::UnknownTopicOrPartition(name.to_string()))?;
            let mut meta = (**t).clone();
            meta.overrides = overrides;
            cat.topics.insert(name.to_string(), Arc::new(meta));
            Ok(())
        })?;
        // Local partitions pick the change up now; others at their next open. Retention and
        // roll settings are read from the partition's copy, refreshed here for local ones.
        let config = self
            .catalog()
            .topics
            .get(name)
            .map(|t| t.overrides.apply(&self.shared.config.topic_defaults));
        if let Some(config) = config {
            for p in self
                .local
                .partitions
                .borrow()
                .values()
                .filter(|p| &*p.tp.topic == name)
            {
                p.set_config(config.clone());
            }
        }
        Ok(())
    }
}

fn add_partitions(cat: &mut CatalogState, meta: &mut TopicMeta, count: usize, shards: usize) {
    let mut load = cat.load_per_shard(shards);
    for p in &meta.partitions {
        if let Some(l) = load.get_mut(p.owner_shard as usize) {
            *l += 1;
        }
    }
    for _ in 0..count {
        let (shard, _) = load
            .iter()
            .enumerate()
            .min_by_key(|(_, l)| **l)
            .unwrap_or((0, &0));
        load[shard] += 1;
        let index = i32::try_from(meta.partitions.len()).unwrap_or(i32::MAX);
        meta.partitions.push(PartitionMeta {
            index,
            owner_shard: u32::try_from(shard).unwrap_or(0),
            uid: cat.next_uid,
        });
        cat.next_uid += 1;
    }
}
