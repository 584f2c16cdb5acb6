//! One measured run of a workload against one broker: open-loop producers, assigned
//! consumers, HDR histograms at microsecond resolution, a throughput timeline and a progress
//! line.
//!
//! ```text
//!   t=0        warm-up end                      end            drain
//!   |-- warm-up (not recorded) --|---- measured window ----|-- acks and fetches finish --|
//! ```
//!
//! Each producer owns one connection and two threads. The writer walks a fixed schedule (at
//! rate r each producer's message i is due at i / (r / producers)), puts every due message in
//! its partition's buffer, and sends one Produce request holding every non-empty partition as
//! soon as one partition's batch is full (`batch_bytes`) or its oldest message has waited
//! `linger_ms`. It never waits for answers except when `in_flight_max` requests are
//! unanswered; a late broker therefore shows up as latency counted from the schedule (the
//! coordinated-omission corrected figure), not as a slower schedule. The reader thread takes
//! the answers in order and records, per message, ack time minus intended time (corrected) and
//! ack time minus the time its request was built (uncorrected).
//!
//! With `rate = 0` (a max-rate run) a producer builds a request whenever its window has room,
//! as fast as answers come back; its latency figures then measure a saturated broker.
//!
//! Consumers are assigned partitions (partition i of the run goes to consumer i mod
//! consumers), start at the end offsets read before producing starts, long-poll with Fetch, and
//! record end-to-end latency (consume time minus intended and actual send times).

use std::collections::VecDeque;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use hdrhistogram::Histogram;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::records::Compression;
use serde::{Deserialize, Serialize};

use super::client::{topic_name, Connection, RequestWriter, ResponseReader};
use super::records::{encode_batch, read_stamps, PendingMessage};
use super::workload::{Keys, Workload};
use crate::histogram::{new_histogram, take_interval, LatencySummary};

/// Highest latency a histogram holds, in µs (longer values are recorded as this).
pub const LATENCY_US_MAX: u64 = 120_000_000;

/// Bytes of messages one producer holds unsent before it stops taking due messages (they
/// stay due, so their latency still counts from the schedule).
pub const PRODUCER_BUFFER_BYTES_MAX: usize = 64 << 20;

/// Longest a producer's writer sleeps between looks at its buffers.
const WRITER_POLL: Duration = Duration::from_micros(500);

/// How long consumers keep fetching after the end, for messages acknowledged late.
const DRAIN_MAX: Duration = Duration::from_secs(10);

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// One run to make.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub label: String,
    pub bootstrap: SocketAddr,
    pub workload: Workload,
    /// Messages per second over all producers; 0 = max rate.
    pub rate: u64,
    /// Process whose CPU time is reported beside the bench's own (the broker).
    pub broker_pid: Option<u32>,
    pub progress: bool,
    /// Where latencies are also recorded interval by interval, for a caller that watches how
    /// a long run changes over time (`keel-bench soak`).
    pub intervals: Option<Arc<IntervalRecorder>>,
}

/// The latencies of the current interval of a run (µs, counted from each message's intended
/// send time, like the run's corrected histograms). Whoever holds it takes and resets them at
/// every interval's end with [`IntervalRecorder::take`]; the run records into them meanwhile.
#[derive(Debug)]
pub struct IntervalRecorder {
    produce: Mutex<Histogram<u64>>,
    e2e: Mutex<Histogram<u64>>,
}

impl IntervalRecorder {
    pub fn new() -> anyhow::Result<Self> {
        Ok(Self {
            produce: Mutex::new(new_histogram(LATENCY_US_MAX)?),
            e2e: Mutex::new(new_histogram(LATENCY_US_MAX)?),
        })
    }

    /// The produce and end-to-end latencies recorded since the last take, each replaced by
    /// an empty histogram.
    pub fn take(&self) -> anyhow::Result<(Histogram<u64>, Histogram<u64>)> {
        Ok((
            take_interval(&self.produce, LATENCY_US_MAX)?,
            take_interval(&self.e2e, LATENCY_US_MAX)?,
        ))
    }
}

/// Microseconds from `from_ns` to `done_ns`, at least 1 (the histograms start at 1).
fn latency_us(done_ns: u64, from_ns: u64) -> u64 {
    (done_ns.saturating_sub(from_ns) / 1000).max(1)
}

/// Throughput in one second of the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelinePoint {
    /// Seconds since the start of the run (warm-up included).
    pub t_s: f64,
    pub acked_mb_per_s: f64,
    pub consumed_mb_per_s: f64,
    pub acked_msg_per_s: f64,
}

/// The figures of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub label: String,
    pub workload: Workload,
    /// Target messages/s, 0 for max rate.
    pub target_rate: u64,
    /// Messages acknowledged within the measured window.
    pub acked_messages: u64,
    pub acked_msg_per_s: f64,
    /// Acknowledged value bytes per second (MB = 10^6 bytes).
    pub acked_mb_per_s: f64,
    pub consumed_messages: u64,
    pub consumed_mb_per_s: f64,
    /// Messages sent after the warm-up that were never acknowledged without error.
    pub produce_errors: u64,
    pub first_error: Option<String>,
    /// Messages due in the window that were still unsent at its end (the schedule fell
    /// behind: the broker could not keep up with the target rate).
    pub unsent_at_end: u64,
    pub produce_latency: LatencySummary,
    pub produce_latency_uncorrected: LatencySummary,
    pub e2e_latency: Option<LatencySummary>,
    pub e2e_latency_uncorrected: Option<LatencySummary>,
    /// CPU seconds (user + system) of keel-bench itself during the measured window, and of
    /// the broker process when known, and the window's length.
    pub bench_cpu_s: f64,
    pub broker_cpu_s: Option<f64>,
    pub window_s: f64,
    pub timeline: Vec<TimelinePoint>,
    /// Histogram files, by role (`produce`, `produce_uncorrected`, `e2e`, `e2e_uncorrected`).
    pub histogram_files: Vec<(String, String)>,
}

/// A finished run: its summary and its raw histograms (µs), by role.
#[derive(Debug)]
pub struct RunOutcome {
    pub summary: RunSummary,
    pub histograms: Vec<(String, Histogram<u64>)>,
}

/// The run's clock: ns since one `Instant`, shared by every thread.
#[derive(Debug, Clone, Copy)]
struct Clock {
    epoch: Instant,
}

impl Clock {
    fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
    fn sleep_until(&self, at_ns: u64) {
        let now = self.now_ns();
        if at_ns > now {
            thread::sleep(Duration::from_nanos(at_ns - now));
        }
    }
}

/// Times of the run, in ns since the epoch.
#[derive(Debug, Clone, Copy)]
struct Window {
    measure_ns: u64,
    end_ns: u64,
}

impl Window {
    fn measured(&self, t_ns: u64) -> bool {
        (self.measure_ns..self.end_ns).contains(&t_ns)
    }
}

/// Latency histograms of one thread.
#[derive(Debug)]
struct Latencies {
    corrected: Histogram<u64>,
    uncorrected: Histogram<u64>,
}

impl Latencies {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            corrected: new_histogram(LATENCY_US_MAX)?,
            uncorrected: new_histogram(LATENCY_US_MAX)?,
        })
    }
    fn record(&mut self, done_ns: u64, intended_ns: u64, actual_ns: u64) {
        self.corrected
            .saturating_record(latency_us(done_ns, intended_ns));
        self.uncorrected
            .saturating_record(latency_us(done_ns, actual_ns));
    }
}

/// Counters shared by every thread of a run.
#[derive(Debug, Default)]
struct Shared {
    acked_bytes: AtomicU64,
    acked_messages: AtomicU64,
    consumed_bytes: AtomicU64,
    window_acked_messages: AtomicU64,
    window_acked_bytes: AtomicU64,
    window_consumed_messages: AtomicU64,
    window_consumed_bytes: AtomicU64,
    produce_errors: AtomicU64,
    unsent_at_end: AtomicU64,
    first_error: Mutex<Option<String>>,
    /// Set when producing is over and every answer is in; consumers then drain.
    producers_done: AtomicBool,
    /// Highest offset + 1 acknowledged per (topic, partition) slot.
    acked_end: Vec<AtomicU64>,
}

impl Shared {
    fn error(&self, message: String) {
        if let Ok(mut first) = self.first_error.lock() {
            first.get_or_insert(message);
        }
    }
}

/// What every thread of a run knows.
#[derive(Debug)]
struct Ctx {
    clock: Clock,
    window: Window,
    workload: Workload,
    compression: Compression,
    topics: Vec<String>,
    /// (topic index, partition) of every partition of the run, in a fixed order.
    slots: Vec<(usize, i32)>,
    shared: Shared,
    filler: Vec<u8>,
    /// Per producer: its latencies, read by the progress line.
    produce_latencies: Vec<Mutex<Latencies>>,
    intervals: Option<Arc<IntervalRecorder>>,
}

/// Runs `spec` and returns its figures. Topics are created first (an existing topic must have
/// the workload's partition count).
pub fn run(spec: &RunSpec) -> anyhow::Result<RunOutcome> {
    let workload = &spec.workload;
    workload.check()?;
    let mut admin = Connection::connect(spec.bootstrap, CONNECT_TIMEOUT)
        .with_context(|| format!("{}: broker at {} unreachable", spec.label, spec.bootstrap))?;
    let topics = workload.topic_names();
    let partitions = i32::try_from(workload.partitions)?;
    for topic in &topics {
        admin.create_topic(topic, partitions)?;
    }
    let slots: Vec<(usize, i32)> = (0..topics.len())
        .flat_map(|t| (0..partitions).map(move |p| (t, p)))
        .collect();
    let mut start_offsets = Vec::with_capacity(slots.len());
    for (index, topic) in topics.iter().enumerate() {
        let ps: Vec<i32> = (0..partitions).collect();
        let offsets = wait_for_offsets(&mut admin, topic, &ps)
            .with_context(|| format!("{}: end offsets of {topic}", spec.label))?;
        start_offsets.extend(offsets.into_iter().map(|o| (index, o)));
    }
    // Connect everyone before the clock starts, so set-up is not measured.
    let producers = workload.producers as usize;
    let consumers = workload.consumers as usize;
    let mut producer_conns = Vec::with_capacity(producers);
    for _ in 0..producers {
        producer_conns.push(Connection::connect(spec.bootstrap, CONNECT_TIMEOUT)?);
    }
    let mut consumer_conns = Vec::with_capacity(consumers);
    for _ in 0..consumers {
        consumer_conns.push(Connection::connect(spec.bootstrap, CONNECT_TIMEOUT)?);
    }
    let warmup_ns = (workload.warmup_s * 1e9) as u64;
    let duration_ns = (workload.duration_s * 1e9) as u64;
    let ctx = Arc::new(Ctx {
        clock: Clock {
            epoch: Instant::now(),
        },
        window: Window {
            measure_ns: warmup_ns,
            end_ns: warmup_ns + duration_ns,
        },
        workload: workload.clone(),
        compression: workload.compression_codec()?,
        topics,
        shared: Shared {
            acked_end: slots.iter().map(|_| AtomicU64::new(0)).collect(),
            ..Shared::default()
        },
        slots,
        filler: (0..workload.message_bytes.max(16))
            .map(|i| (i * 31 % 251) as u8)
            .collect(),
        produce_latencies: (0..producers)
            .map(|_| Latencies::new().map(Mutex::new))
            .collect::<anyhow::Result<_>>()?,
        intervals: spec.intervals.clone(),
    });
    let mut producer_threads = Vec::new();
    for (index, connection) in producer_conns.into_iter().enumerate() {
        let ctx = ctx.clone();
        producer_threads.push(
            thread::Builder::new()
                .name(format!("producer-{index}"))
                .spawn(move || produce(&ctx, index, connection))?,
        );
    }
    let mut consumer_threads = Vec::new();
    for (index, connection) in consumer_conns.into_iter().enumerate() {
        let ctx = ctx.clone();
        let assigned: Vec<(usize, i64)> = (0..ctx.slots.len())
            .filter(|slot| slot % consumers == index)
            .map(|slot| (slot, start_offsets[slot].1))
            .collect();
        consumer_threads.push(
            thread::Builder::new()
                .name(format!("consumer-{index}"))
                .spawn(move || consume(&ctx, connection, assigned))?,
        );
    }
    observe(spec, &ctx, producer_threads, consumer_threads)
}

/// ListOffsets right after CreateTopics can race the topic's creation; retry for a while.
fn wait_for_offsets(
    admin: &mut Connection,
    topic: &str,
    partitions: &[i32],
) -> anyhow::Result<Vec<i64>> {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        match admin.end_offsets(topic, partitions) {
            Ok(offsets) => return Ok(offsets),
            Err(error) if Instant::now() < until => {
                tracing::debug!(%error, "end offsets not ready");
                thread::sleep(Duration::from_millis(100));
            }
            Err(error) => return Err(error),
        }
    }
}

/// Requests of one producer connection that have no answer yet, bounded by `in_flight_max`.
#[derive(Debug, Default)]
struct InFlightWindow {
    count: Mutex<u32>,
    changed: Condvar,
}

impl InFlightWindow {
    /// Waits until fewer than `max` requests are unanswered, then takes a place.
    fn acquire(&self, max: u32) {
        let Ok(mut count) = self.count.lock() else {
            return;
        };
        while *count >= max {
            count = match self.changed.wait(count) {
                Ok(guard) => guard,
                Err(_) => return,
            };
        }
        *count += 1;
    }
    fn release(&self) {
        if let Ok(mut count) = self.count.lock() {
            *count = count.saturating_sub(1);
        }
        self.changed.notify_all();
    }
}

/// What the reader needs to time the answer to one Produce request.
#[derive(Debug)]
struct InFlight {
    correlation_id: i32,
    actual_ns: u64,
    /// (slot, intended times of its messages, in order).
    parts: Vec<(usize, Vec<u64>)>,
}

/// One producer: a writer loop on this thread, a reader thread for the answers.
fn produce(ctx: &Arc<Ctx>, index: usize, connection: Connection) -> anyhow::Result<()> {
    let (writer, reader, versions) = connection.split();
    let (sender, receiver) = channel::<InFlight>();
    let window = Arc::new(InFlightWindow::default());
    let reader_thread = {
        let (ctx, window) = (ctx.clone(), window.clone());
        thread::Builder::new()
            .name(format!("acks-{index}"))
            .spawn(move || read_acks(&ctx, index, reader, &receiver, &window, versions.produce))?
    };
    let mut producer = Producer::new(ctx, index, writer, sender, window, versions.produce);
    let written = producer.write_loop();
    if written.is_err() {
        producer.writer.shutdown();
    }
    drop(producer);
    let read = reader_thread
        .join()
        .map_err(|_| anyhow::anyhow!("producer {index}'s reader panicked"))?;
    written.and(read)
}

/// The writing side of one producer.
struct Producer<'a> {
    ctx: &'a Ctx,
    writer: RequestWriter,
    sender: Sender<InFlight>,
    window: Arc<InFlightWindow>,
    version: i16,
    buffers: Vec<VecDeque<PendingMessage>>,
    buffered_bytes: usize,
    /// Schedule slot of the next message, and the gap between slots (0: max rate).
    next_index: u64,
    interval_ns: f64,
    batch_messages: usize,
    round_robin: usize,
    key_counter: u64,
    rng: u64,
}

impl std::fmt::Debug for Producer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("next_index", &self.next_index)
            .finish()
    }
}

impl<'a> Producer<'a> {
    fn new(
        ctx: &'a Ctx,
        index: usize,
        writer: RequestWriter,
        sender: Sender<InFlight>,
        window: Arc<InFlightWindow>,
        version: i16,
    ) -> Self {
        let workload = &ctx.workload;
        let rate_per_producer = workload_rate(ctx) as f64 / f64::from(workload.producers);
        Self {
            ctx,
            writer,
            sender,
            window,
            version,
            buffers: vec![VecDeque::new(); ctx.slots.len()],
            buffered_bytes: 0,
            // Producers start their schedules evenly staggered within one slot.
            next_index: 0,
            interval_ns: if rate_per_producer > 0.0 {
                1e9 / rate_per_producer
            } else {
                0.0
            },
            batch_messages: (workload.batch_bytes / workload.message_bytes).max(1),
            round_robin: index * 7919,
            key_counter: 0,
            rng: 0x9E37_79B9_7F4A_7C15 ^ (index as u64 + 1),
        }
    }

    fn slot_time(&self, index: u64) -> u64 {
        (index as f64 * self.interval_ns) as u64
    }

    /// Puts one message due at `intended_ns` into its partition's buffer.
    fn enqueue(&mut self, intended_ns: u64) {
        let slot_count = self.buffers.len();
        let (slot, key) = match self.ctx.workload.keys {
            Keys::None => (self.next_round_robin(slot_count), None),
            Keys::RoundRobin => {
                self.key_counter += 1;
                let key = Bytes::from(format!("k{}", self.key_counter));
                (self.next_round_robin(slot_count), Some(key))
            }
            Keys::Random(distinct) => {
                // xorshift64*: cheap, and good enough to spread keys.
                self.rng ^= self.rng >> 12;
                self.rng ^= self.rng << 25;
                self.rng ^= self.rng >> 27;
                let draw = self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D) % u64::from(distinct);
                let key = format!("k{draw}");
                let slot = (fnv1a(key.as_bytes()) % slot_count as u64) as usize;
                (slot, Some(Bytes::from(key)))
            }
        };
        self.buffers[slot].push_back(PendingMessage { intended_ns, key });
        self.buffered_bytes += self.ctx.workload.message_bytes;
    }

    fn next_round_robin(&mut self, slot_count: usize) -> usize {
        self.round_robin = self.round_robin.wrapping_add(1);
        self.round_robin % slot_count
    }

    fn write_loop(&mut self) -> anyhow::Result<()> {
        let end_ns = self.ctx.window.end_ns;
        let linger_ns = self.ctx.workload.linger_ms * 1_000_000;
        let max_rate = self.interval_ns == 0.0;
        let in_flight_max = self.ctx.workload.in_flight_max;
        loop {
            let now = self.ctx.clock.now_ns();
            let generating = now < end_ns;
            if max_rate && generating {
                self.window.acquire(in_flight_max);
                let now = self.ctx.clock.now_ns();
                while self.fullest() < self.batch_messages
                    && self.buffered_bytes < PRODUCER_BUFFER_BYTES_MAX
                {
                    self.enqueue(now);
                }
                self.send_request(false)?;
                continue;
            }
            if generating {
                while self.buffered_bytes < PRODUCER_BUFFER_BYTES_MAX {
                    let intended = self.slot_time(self.next_index);
                    if intended > now || intended >= end_ns {
                        break;
                    }
                    self.enqueue(intended);
                    self.next_index += 1;
                }
            }
            let oldest = self
                .buffers
                .iter()
                .filter_map(|b| b.front())
                .map(|m| m.intended_ns)
                .min();
            let Some(oldest) = oldest else {
                if !generating {
                    break;
                }
                let next = self.slot_time(self.next_index);
                self.ctx
                    .clock
                    .sleep_until(next.min(now + WRITER_POLL.as_nanos() as u64));
                continue;
            };
            if !generating || self.fullest() >= self.batch_messages || oldest + linger_ns <= now {
                self.send_request(true)?;
                continue;
            }
            let next_due = self.slot_time(self.next_index);
            let wake = (oldest + linger_ns)
                .min(next_due.max(now) + linger_ns)
                .min(now + WRITER_POLL.as_nanos() as u64)
                .min(end_ns);
            self.ctx.clock.sleep_until(wake);
        }
        if !max_rate {
            let due_unsent = (end_ns as f64 / self.interval_ns).ceil() as u64;
            self.ctx.shared.unsent_at_end.fetch_add(
                due_unsent.saturating_sub(self.next_index),
                Ordering::Relaxed,
            );
        }
        Ok(())
    }

    fn fullest(&self) -> usize {
        self.buffers.iter().map(VecDeque::len).max().unwrap_or(0)
    }

    /// Sends every non-empty partition's batch (up to `batch_messages` each) in one request.
    fn send_request(&mut self, acquire: bool) -> anyhow::Result<()> {
        if acquire {
            self.window.acquire(self.ctx.workload.in_flight_max);
        }
        let actual_ns = self.ctx.clock.now_ns();
        let wall_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(0));
        let mut topic_data: Vec<TopicProduceData> = Vec::new();
        let mut parts = Vec::new();
        let mut taken: Vec<PendingMessage> = Vec::with_capacity(self.batch_messages);
        for slot in 0..self.buffers.len() {
            if self.buffers[slot].is_empty() {
                continue;
            }
            let count = self.buffers[slot].len().min(self.batch_messages);
            taken.clear();
            taken.extend(self.buffers[slot].drain(..count));
            self.buffered_bytes -= count * self.ctx.workload.message_bytes;
            let records = encode_batch(
                &taken,
                actual_ns,
                self.ctx.workload.message_bytes,
                &self.ctx.filler,
                self.ctx.compression,
                wall_ms,
            )?;
            let (topic_index, partition) = self.ctx.slots[slot];
            let name = topic_name(&self.ctx.topics[topic_index]);
            let partition_data = PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(records));
            match topic_data.last_mut() {
                Some(topic) if topic.name == name => topic.partition_data.push(partition_data),
                _ => topic_data.push(
                    TopicProduceData::default()
                        .with_name(name)
                        .with_partition_data(vec![partition_data]),
                ),
            }
            parts.push((slot, taken.iter().map(|m| m.intended_ns).collect()));
        }
        let request = ProduceRequest::default()
            .with_acks(self.ctx.workload.acks)
            .with_timeout_ms(30_000)
            .with_topic_data(topic_data);
        let correlation_id = self.writer.next_correlation_id();
        self.sender
            .send(InFlight {
                correlation_id,
                actual_ns,
                parts,
            })
            .map_err(|_| anyhow::anyhow!("the producer's reader stopped"))?;
        self.writer.send_produce(&request, self.version)?;
        Ok(())
    }
}

fn workload_rate(ctx: &Ctx) -> u64 {
    ctx.workload.rate
}

/// FNV-1a, 64 bit: the partitioner of random keys.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The reading side of one producer: answers in order, latencies per message.
fn read_acks(
    ctx: &Ctx,
    index: usize,
    mut reader: ResponseReader,
    receiver: &Receiver<InFlight>,
    window: &InFlightWindow,
    version: i16,
) -> anyhow::Result<()> {
    let shared = &ctx.shared;
    let message_bytes = ctx.workload.message_bytes as u64;
    while let Ok(in_flight) = receiver.recv() {
        let response = reader.receive::<ProduceRequest>(version, in_flight.correlation_id);
        let done_ns = ctx.clock.now_ns();
        window.release();
        let response: ProduceResponse = match response {
            Ok(response) => response,
            Err(error) => {
                shared.error(format!("{error:#}"));
                // Wake a writer waiting for room; it fails on its next write.
                window.release();
                return Err(error);
            }
        };
        let mut latencies = ctx.produce_latencies[index]
            .lock()
            .map_err(|_| anyhow::anyhow!("latency lock poisoned"))?;
        let mut interval = ctx.intervals.as_deref().and_then(|i| i.produce.lock().ok());
        for (slot, intended) in &in_flight.parts {
            let (topic_index, partition) = ctx.slots[*slot];
            let topic = topic_name(&ctx.topics[topic_index]);
            let answer = response
                .responses
                .iter()
                .filter(|t| t.name == topic)
                .flat_map(|t| t.partition_responses.iter())
                .find(|p| p.index == partition);
            let count = intended.len() as u64;
            match answer {
                Some(answer) if answer.error_code == 0 => {
                    for &intended_ns in intended {
                        if ctx.window.measured(intended_ns) {
                            latencies.record(done_ns, intended_ns, in_flight.actual_ns);
                            if let Some(histogram) = interval.as_mut() {
                                histogram.saturating_record(latency_us(done_ns, intended_ns));
                            }
                        }
                    }
                    shared.acked_end[*slot].fetch_max(
                        (answer.base_offset + count as i64) as u64,
                        Ordering::Relaxed,
                    );
                    shared.acked_messages.fetch_add(count, Ordering::Relaxed);
                    shared
                        .acked_bytes
                        .fetch_add(count * message_bytes, Ordering::Relaxed);
                    if ctx.window.measured(done_ns) {
                        shared
                            .window_acked_messages
                            .fetch_add(count, Ordering::Relaxed);
                        shared
                            .window_acked_bytes
                            .fetch_add(count * message_bytes, Ordering::Relaxed);
                    }
                }
                other => {
                    let code = other.map_or(-1, |a| a.error_code);
                    shared.produce_errors.fetch_add(count, Ordering::Relaxed);
                    shared.error(format!(
                        "produce to {}-{partition}: error code {code}",
                        ctx.topics[topic_index]
                    ));
                }
            }
        }
    }
    Ok(())
}

/// One consumer: long-polls its assigned partitions and records end-to-end latency.
fn consume(
    ctx: &Ctx,
    mut connection: Connection,
    assigned: Vec<(usize, i64)>,
) -> anyhow::Result<Latencies> {
    let mut latencies = Latencies::new()?;
    let mut offsets = assigned;
    let shared = &ctx.shared;
    let mut drain_until: Option<Instant> = None;
    loop {
        if shared.producers_done.load(Ordering::Acquire) {
            let caught_up = offsets.iter().all(|&(slot, offset)| {
                offset as u64 >= shared.acked_end[slot].load(Ordering::Relaxed)
            });
            let deadline = *drain_until.get_or_insert_with(|| Instant::now() + DRAIN_MAX);
            if caught_up || Instant::now() >= deadline {
                return Ok(latencies);
            }
        }
        for topic_index in 0..ctx.topics.len() {
            let wanted: Vec<(i32, i64)> = offsets
                .iter()
                .filter(|(slot, _)| ctx.slots[*slot].0 == topic_index)
                .map(|&(slot, offset)| (ctx.slots[slot].1, offset))
                .collect();
            if wanted.is_empty() {
                continue;
            }
            let response = connection.fetch(&ctx.topics[topic_index], &wanted, 100, 4 << 20)?;
            let done_ns = ctx.clock.now_ns();
            let mut interval = ctx.intervals.as_deref().and_then(|i| i.e2e.lock().ok());
            for data in response.responses.iter().flat_map(|t| t.partitions.iter()) {
                let Some(entry) = offsets
                    .iter_mut()
                    .find(|(slot, _)| ctx.slots[*slot] == (topic_index, data.partition_index))
                else {
                    continue;
                };
                if data.error_code != 0 {
                    shared.error(format!(
                        "fetch {}-{}: error code {}",
                        ctx.topics[topic_index], data.partition_index, data.error_code
                    ));
                    continue;
                }
                let Some(records) = &data.records else {
                    continue;
                };
                let mut records = records.clone();
                let consumed = read_stamps(&mut records, entry.1)?;
                if let Some(next) = consumed.next_offset {
                    entry.1 = entry.1.max(next);
                }
                shared
                    .consumed_bytes
                    .fetch_add(consumed.value_bytes, Ordering::Relaxed);
                for (intended_ns, actual_ns) in consumed.stamps {
                    if ctx.window.measured(intended_ns) {
                        latencies.record(done_ns, intended_ns, actual_ns);
                        if let Some(histogram) = interval.as_mut() {
                            histogram.saturating_record(latency_us(done_ns, intended_ns));
                        }
                        shared
                            .window_consumed_messages
                            .fetch_add(1, Ordering::Relaxed);
                        shared
                            .window_consumed_bytes
                            .fetch_add(ctx.workload.message_bytes as u64, Ordering::Relaxed);
                    }
                }
            }
        }
    }
}

/// CPU seconds (user + system) of this process so far.
fn own_cpu_s() -> f64 {
    // SAFETY: getrusage writes into the struct we pass and nothing else.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_SELF is always valid.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0.0;
    }
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// CPU seconds (user + system) of process `pid` so far, from /proc/<pid>/stat.
pub fn process_cpu_s(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let per_s = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (per_s > 0).then(|| ticks as f64 / per_s as f64)
}

/// The main thread's part: a timeline point and a progress line every second, CPU times at
/// the window's edges, then the joins and the summary.
fn observe(
    spec: &RunSpec,
    ctx: &Arc<Ctx>,
    producer_threads: Vec<thread::JoinHandle<anyhow::Result<()>>>,
    consumer_threads: Vec<thread::JoinHandle<anyhow::Result<Latencies>>>,
) -> anyhow::Result<RunOutcome> {
    let shared = &ctx.shared;
    let window = ctx.window;
    let terminal = std::io::stderr().is_terminal();
    let mut timeline = Vec::new();
    let (mut last_acked, mut last_consumed, mut last_messages) = (0u64, 0u64, 0u64);
    let mut cpu_at_measure = None;
    let mut tick_ns = 1_000_000_000u64;
    let cpu_now = || (own_cpu_s(), spec.broker_pid.and_then(process_cpu_s));
    loop {
        let next = if cpu_at_measure.is_none() && window.measure_ns < tick_ns {
            window.measure_ns
        } else {
            tick_ns.min(window.end_ns)
        };
        ctx.clock.sleep_until(next);
        if cpu_at_measure.is_none() && next >= window.measure_ns {
            cpu_at_measure = Some((cpu_now(), ctx.clock.now_ns()));
        }
        if next == window.end_ns {
            break;
        }
        if next < tick_ns {
            continue;
        }
        let acked = shared.acked_bytes.load(Ordering::Relaxed);
        let consumed = shared.consumed_bytes.load(Ordering::Relaxed);
        let messages = shared.acked_messages.load(Ordering::Relaxed);
        timeline.push(TimelinePoint {
            t_s: tick_ns as f64 / 1e9,
            acked_mb_per_s: (acked - last_acked) as f64 / 1e6,
            consumed_mb_per_s: consumed.saturating_sub(last_consumed) as f64 / 1e6,
            acked_msg_per_s: (messages - last_messages) as f64,
        });
        (last_acked, last_consumed, last_messages) = (acked, consumed, messages);
        if spec.progress {
            progress_line(spec, ctx, &timeline, tick_ns, terminal);
        }
        tick_ns += 1_000_000_000;
    }
    let cpu_end = cpu_now();
    let end_at_ns = ctx.clock.now_ns();
    if spec.progress && terminal {
        eprintln!();
    }
    let mut first_failure = None;
    for handle in producer_threads {
        match handle.join() {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                first_failure.get_or_insert(error);
            }
            Err(_) => {
                first_failure.get_or_insert(anyhow::anyhow!("a producer thread panicked"));
            }
        }
    }
    shared.producers_done.store(true, Ordering::Release);
    let mut e2e = Latencies::new()?;
    for handle in consumer_threads {
        match handle.join() {
            Ok(Ok(latencies)) => {
                e2e.corrected.add(&latencies.corrected)?;
                e2e.uncorrected.add(&latencies.uncorrected)?;
            }
            Ok(Err(error)) => {
                first_failure.get_or_insert(error);
            }
            Err(_) => {
                first_failure.get_or_insert(anyhow::anyhow!("a consumer thread panicked"));
            }
        }
    }
    if let Some(error) = first_failure {
        return Err(error.context(format!("run {} against {}", spec.label, spec.bootstrap)));
    }
    let ((cpu_start, broker_start), start_ns) =
        cpu_at_measure.unwrap_or(((0.0, None), window.measure_ns));
    let window_s = (end_at_ns - start_ns) as f64 / 1e9;
    let mut produce = Latencies::new()?;
    for latencies in &ctx.produce_latencies {
        let latencies = latencies
            .lock()
            .map_err(|_| anyhow::anyhow!("latency lock poisoned"))?;
        produce.corrected.add(&latencies.corrected)?;
        produce.uncorrected.add(&latencies.uncorrected)?;
    }
    summarize(
        spec,
        ctx,
        produce,
        e2e,
        timeline,
        window_s,
        cpu_end.0 - cpu_start,
        {
            match (broker_start, cpu_end.1) {
                (Some(a), Some(b)) => Some(b - a),
                _ => None,
            }
        },
    )
}

fn progress_line(
    spec: &RunSpec,
    ctx: &Ctx,
    timeline: &[TimelinePoint],
    now_ns: u64,
    terminal: bool,
) {
    let last = timeline.last().map_or(0.0, |p| p.acked_msg_per_s);
    let mb = timeline.last().map_or(0.0, |p| p.acked_mb_per_s);
    let mut merged = match Latencies::new() {
        Ok(latencies) => latencies.corrected,
        Err(_) => return,
    };
    for latencies in &ctx.produce_latencies {
        if let Ok(latencies) = latencies.lock() {
            let _ = merged.add(&latencies.corrected);
        }
    }
    let phase = if now_ns < ctx.window.measure_ns {
        "warm-up"
    } else {
        "measuring"
    };
    let left_s = ctx.window.end_ns.saturating_sub(now_ns) as f64 / 1e9;
    let p99 = if merged.is_empty() {
        "-".to_owned()
    } else {
        format!("{:.2} ms", merged.value_at_quantile(0.99) as f64 / 1000.0)
    };
    let line = format!(
        "{} {phase}: {last:.0} msg/s ({mb:.1} MB/s), produce p99 so far {p99}, {left_s:.0} s left",
        spec.label
    );
    if terminal {
        eprint!("\r{line:<100}");
    } else if (now_ns / 1_000_000_000).is_multiple_of(5) {
        eprintln!("{line}");
    }
}

#[allow(clippy::too_many_arguments)]
fn summarize(
    spec: &RunSpec,
    ctx: &Ctx,
    produce: Latencies,
    e2e: Latencies,
    timeline: Vec<TimelinePoint>,
    window_s: f64,
    bench_cpu_s: f64,
    broker_cpu_s: Option<f64>,
) -> anyhow::Result<RunOutcome> {
    let shared = &ctx.shared;
    let duration_s = ctx.workload.duration_s;
    let acked_messages = shared.window_acked_messages.load(Ordering::Relaxed);
    let consumed_messages = shared.window_consumed_messages.load(Ordering::Relaxed);
    let summary_of = |h: &Histogram<u64>| LatencySummary::from_histogram(h, 1.0);
    let has_e2e = !e2e.corrected.is_empty();
    let summary = RunSummary {
        label: spec.label.clone(),
        workload: ctx.workload.clone(),
        target_rate: spec.rate,
        acked_messages,
        acked_msg_per_s: acked_messages as f64 / duration_s,
        acked_mb_per_s: shared.window_acked_bytes.load(Ordering::Relaxed) as f64 / 1e6 / duration_s,
        consumed_messages,
        consumed_mb_per_s: shared.window_consumed_bytes.load(Ordering::Relaxed) as f64
            / 1e6
            / duration_s,
        produce_errors: shared.produce_errors.load(Ordering::Relaxed),
        first_error: shared.first_error.lock().ok().and_then(|e| e.clone()),
        unsent_at_end: shared.unsent_at_end.load(Ordering::Relaxed),
        produce_latency: summary_of(&produce.corrected),
        produce_latency_uncorrected: summary_of(&produce.uncorrected),
        e2e_latency: has_e2e.then(|| summary_of(&e2e.corrected)),
        e2e_latency_uncorrected: has_e2e.then(|| summary_of(&e2e.uncorrected)),
        bench_cpu_s,
        broker_cpu_s,
        window_s,
        timeline,
        histogram_files: Vec::new(),
    };
    let mut histograms = vec![
        ("produce".to_owned(), produce.corrected),
        ("produce_uncorrected".to_owned(), produce.uncorrected),
    ];
    if has_e2e {
        histograms.push(("e2e".to_owned(), e2e.corrected));
        histograms.push(("e2e_uncorrected".to_owned(), e2e.uncorrected));
    }
    Ok(RunOutcome {
        summary,
        histograms,
    })
}
