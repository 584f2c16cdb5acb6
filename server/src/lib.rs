//! # keel-server
//!
//! The `keel` broker: the Kafka wire protocol in front of [`keel_engine`]. Unmodified Kafka
//! clients produce, consume and manage topics through it.
//!
//! ## The tour
//! - [`config`]: every setting, as flags and as keys of an optional TOML file.
//! - [`server`]: one shard's life: bind (every shard on the same port), accept, serve, drain.
//!   Start reading here.
//! - [`connection`]: buffered reads cut into length-prefixed frames, bounded by
//!   `request_bytes_max`; responses written in request order.
//! - [`codec`]: a cheap check of a frame (API key, version), then the request header; the
//!   response header and frame on the way out.
//! - [`handlers`]: one file per Kafka API, and `APIS`, the one list of what keel serves.
//! - [`group`]: the consumer group coordinator: one per shard, for the groups whose
//!   partition of `__consumer_offsets` the shard owns.
//! - [`error`]: why a connection closes, and the one mapping of engine errors to Kafka codes.
//! - [`broker`]: what shards share (settings, counters, broker state) and what a handler sees.
//! - [`state`]: the cluster id and the producer id counter, kept in the data dir.
//! - [`shutdown`]: SIGTERM/SIGINT to a flag every shard watches.
//! - [`alloc`]: the global allocator, which reserves huge allocations lazily so that a length
//!   read off the wire cannot abort the broker.
//!
//! Data flow of a produce: socket → [`connection::Connection::read_frame`] (the frame is one
//! `Bytes`) → [`codec::parse_frame`] → [`handlers::produce`] decodes the body; each partition's
//! records are a slice of the frame → `Shard::append` on the owner shard → the response, in
//! request order, once the engine says the batch is durable.

pub mod alloc;
pub mod broker;
pub mod codec;
pub mod config;
pub mod connection;
pub mod error;
pub mod group;
pub mod handlers;
pub mod server;
pub mod shutdown;
pub mod state;

use std::sync::Arc;

use broker::Broker;
use config::Config;
use shutdown::ShutdownFlag;
use state::BrokerState;

/// Why the broker stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The broker state in the data dir could not be loaded.
    #[error(transparent)]
    State(#[from] state::StateError),
    /// The engine failed to start or to close cleanly.
    #[error(transparent)]
    Engine(#[from] keel_engine::EngineError),
    /// The settings cannot be used on this machine (an I/O backend without io_uring).
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// A shard could not listen.
    #[error("a shard could not start listening (see the log)")]
    Listen,
}

/// Runs the broker until `shutdown` is triggered and every shard has drained.
///
/// # Errors
/// Broker state that cannot be loaded, an engine that cannot start or close, or an address
/// that cannot be bound.
pub fn run(config: Config, shutdown: ShutdownFlag) -> Result<(), RunError> {
    let state = BrokerState::open(&config.data_dir)?;
    let mut engine_config = config.engine();
    engine_config.io_backend = config.resolve_io_backend()?;
    tracing::info!(
        io_backend = %engine_config.io_backend,
        runtime = ?engine_config.io_backend.runtime(),
        "storage backend"
    );
    let broker = Arc::new(Broker::new(config, state, shutdown));
    let main_broker = Arc::clone(&broker);
    keel_engine::run(engine_config, move |shard| {
        server::shard_main(shard, Arc::clone(&main_broker))
    })?;
    if broker.failed() {
        return Err(RunError::Listen);
    }
    Ok(())
}
