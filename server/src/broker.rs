//! What every shard of the broker shares, and what one shard's handlers see.

use std::{
    net::SocketAddr,
    rc::Rc,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, OnceLock,
    },
};

use keel_engine::Shard;

use crate::{config::Config, shutdown::ShutdownFlag, shutdown::ShutdownSignal, state::BrokerState};

/// The node id of this broker: keel is a cluster of one.
pub const NODE_ID: i32 = 0;

/// State shared by all shards.
#[derive(Debug)]
pub struct Broker {
    /// The settings.
    pub config: Config,
    /// Cluster id and producer ids.
    pub state: BrokerState,
    /// Set on SIGTERM/SIGINT, or when a shard cannot start.
    pub shutdown: ShutdownFlag,
    connections: AtomicUsize,
    bound_addr: OnceLock<SocketAddr>,
    advertised: OnceLock<(String, i32)>,
    bound_shards: AtomicUsize,
    failed: AtomicBool,
    /// Consumer groups held by all coordinators, against `groups_max`.
    pub group_count: AtomicUsize,
}

impl Broker {
    /// Shared state for a broker about to start.
    #[must_use]
    pub fn new(config: Config, state: BrokerState, shutdown: ShutdownFlag) -> Self {
        Broker {
            config,
            state,
            shutdown,
            connections: AtomicUsize::new(0),
            bound_addr: OnceLock::new(),
            advertised: OnceLock::new(),
            bound_shards: AtomicUsize::new(0),
            failed: AtomicBool::new(false),
            group_count: AtomicUsize::new(0),
        }
    }

    /// The host and port clients are told to use.
    #[must_use]
    pub fn advertised(&self) -> (&str, i32) {
        self.advertised
            .get()
            .map_or(("127.0.0.1", 9092), |(h, p)| (h.as_str(), *p))
    }

    /// The address the first shard bound, which every other shard binds too.
    #[must_use]
    pub fn bound_addr(&self) -> Option<SocketAddr> {
        self.bound_addr.get().copied()
    }

    /// Records the address the first shard bound and what clients are told.
    pub fn set_bound(&self, addr: SocketAddr, advertised: (String, i32)) {
        let _ = self.bound_addr.set(addr);
        let _ = self.advertised.set(advertised);
    }

    /// Counts a shard whose listener is bound; true for the last one.
    pub fn shard_bound(&self) -> bool {
        self.bound_shards.fetch_add(1, Ordering::AcqRel) + 1 == self.config.shards
    }

    /// A shard could not start: the broker shuts down and exits with an error.
    pub fn fail(&self) {
        self.failed.store(true, Ordering::Release);
        self.shutdown.trigger();
    }

    /// Whether a shard failed to start.
    #[must_use]
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// Takes a connection slot, unless `connections_max` are open.
    #[must_use]
    pub fn try_open_connection(self: &Arc<Self>) -> Option<ConnectionSlot> {
        let before = self.connections.fetch_add(1, Ordering::AcqRel);
        if before >= self.config.connections_max {
            self.connections.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(ConnectionSlot(Arc::clone(self)))
    }
}

/// One open connection, counted against `connections_max` until dropped.
#[derive(Debug)]
pub struct ConnectionSlot(Arc<Broker>);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What a handler sees: this shard's engine handle, the shared broker, the shutdown signal.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// This shard's engine handle (it routes to other shards).
    pub shard: Shard,
    /// The shared broker state.
    pub broker: Arc<Broker>,
    /// Fires when shutdown starts (ends long polls early).
    pub shutdown: ShutdownSignal,
    /// This shard's budget of bytes in large request frames (`request_memory_bytes_max`).
    pub request_memory: Rc<keel_engine::rt::Budget>,
    /// This shard's budget of bytes in Fetch answers (`response_memory_bytes_max`).
    pub response_memory: Rc<keel_engine::rt::Budget>,
    /// The client's address, on a connection's copy of the context.
    pub peer: Option<SocketAddr>,
}
