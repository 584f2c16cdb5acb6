//! The Kafka load generator: `keel-bench run` and `keel-bench sweep` measure any broker at a
//! bootstrap address with the same code, so keel and a peer are compared in one run.
//!
//! - [`client`]: a blocking Kafka connection (kafka-protocol encodings, version negotiation,
//!   pipelined requests).
//! - [`records`]: message values carrying their send times, and the batches that hold them.
//! - [`workload`]: the TOML workload files (`bench/workloads/`).
//! - [`run`]: one open-loop run: producers on a fixed schedule, assigned consumers, HDR
//!   histograms (µs) corrected for coordinated omission and not, a timeline, a progress line.
//! - [`broker`]: starting and stopping a measured broker from its command, data dir cleaned.
//! - [`sweep`]: the maximum rate, then fixed-rate runs at fractions of it, per system, with the
//!   machine limits of the same run; [`summary`], [`markdown`] and [`files`] make the report.

pub mod broker;
pub mod client;
pub mod files;
pub mod markdown;
pub mod records;
pub mod run;
pub mod summary;
pub mod sweep;
pub mod workload;
