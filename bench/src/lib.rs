//! keel-bench: the measuring side of keel.
//!
//! What lives here, and where to start reading:
//!
//! - [`limits`]: the machine's own ceiling, measured without keel: io_uring O_DIRECT sequential
//!   writes ([`limits::disk_write`]), fdatasync latency ([`limits::fsync_latency`]), loopback
//!   TCP ([`limits::loopback_throughput`], [`limits::loopback_rtt`]) and the machine facts
//!   ([`limits::machine_info`]). Every keel benchmark report states its throughput as a
//!   fraction of these figures, measured in the same run.
//! - [`engine`]: `keel-bench engine`, the storage engine's report (issue 3): keel-engine
//!   partitions driven directly on one pinned core, each figure a fraction of the raw limit
//!   measured in the same run, and a breakdown of where an append's time goes.
//! - [`kafka`]: `keel-bench run` and `keel-bench sweep`, the Kafka load generator (issue 6):
//!   any broker at a bootstrap address, open loop, HDR latencies corrected for coordinated
//!   omission, brokers started and stopped from their commands, the report against the
//!   machine limits and a peer broker of the same run.
//! - [`soak`]: `keel-bench soak` (issue 7), a long mixed load (produce, fetch, groups, admin)
//!   against a keel it starts, with retention deleting segments, sampling the broker's RSS and
//!   open files every second and latency every interval, and checking that all stay flat.
//! - [`storage`]: `keel-bench storage` (issue 8): a matrix of storage settings (I/O backend,
//!   fsync, segment and write size, preallocation, batch cache, group commit, producer batch
//!   and linger), one axis at a time around a baseline, against the engine alone and the
//!   broker, with the raw limit, the latency and the CPU per MiB of every cell.
//! - [`histogram`]: HDR histogram creation, the percentile summary every report prints, and the
//!   raw V2 files.
//! - [`report`]: the `results/<date>_<gitsha>_<host>/` folder, `command.txt`, JSON, and the
//!   Markdown percentile table.
//! - [`plot`]: percentile-spectrum PNGs (plotters, embedded font).
//! - [`units`]: byte sizes as typed on the command line.
//!
//! The `keel-bench` binary (`src/main.rs`) is a clap front end over these modules.

pub mod engine;
pub mod histogram;
pub mod kafka;
pub mod limits;
pub mod plot;
pub mod report;
pub mod soak;
pub mod storage;
pub mod units;
