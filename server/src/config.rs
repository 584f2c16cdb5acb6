//! The broker's settings: command-line flags, and the same keys in an optional TOML file.
//!
//! Every setting is a flag (`--segment-bytes-max`). A file given with `--config` may set any of
//! them with the same key, spelled with `_` or `-` (`segment_bytes_max = 1048576`). A flag on
//! the command line wins over the file, and the file over the default. The merge is done by
//! turning the file into flags placed *before* the real ones and letting clap keep the last
//! occurrence of each, so that a file is validated exactly as the flags are.
//!
//! Engine defaults are read from [`EngineConfig::new`], so `keel --help` shows the values the
//! engine really uses and no number is written twice.

use std::{
    ffi::OsString,
    net::{SocketAddr, ToSocketAddrs},
    path::{Path, PathBuf},
};

use clap::{CommandFactory, FromArgMatches, Parser};
use keel_engine::{
    config::available_cores, storage::UringOptions, BackendOptions, EngineConfig, FsyncPolicy,
    IoBackend, TopicConfig,
};

/// Why the settings could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The flags (or the file turned into flags) were rejected by the parser.
    #[error(transparent)]
    Flags(#[from] clap::Error),
    /// The config file could not be read.
    #[error("reading config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The config file is not valid TOML or has a value of an unusable kind.
    #[error("config file {path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A value out of its range, or settings that contradict each other.
    #[error("invalid setting: {0}")]
    Invalid(String),
}

fn engine_defaults() -> EngineConfig {
    EngineConfig::new("")
}

fn uring_defaults() -> UringOptions {
    UringOptions::default()
}

/// `--io-backend`: a backend, or `auto`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum IoBackendChoice {
    /// glommio when io_uring can be set up, else pwrite (with one line in the log saying so).
    Auto,
    /// glommio DMA files on glommio's io_uring rings.
    Glommio,
    /// The io-uring crate on a ring per shard (epoll sockets).
    Uring,
    /// pwrite and fdatasync on a thread pool, no io_uring (epoll sockets).
    Pwrite,
}

impl IoBackendChoice {
    /// The backend named, or `None` for `auto`.
    #[must_use]
    pub const fn named(self) -> Option<IoBackend> {
        match self {
            IoBackendChoice::Auto => None,
            IoBackendChoice::Glommio => Some(IoBackend::Glommio),
            IoBackendChoice::Uring => Some(IoBackend::Uring),
            IoBackendChoice::Pwrite => Some(IoBackend::Pwrite),
        }
    }
}

fn topic_defaults() -> TopicConfig {
    TopicConfig::default()
}

/// Every setting of the broker.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "keel",
    version,
    about = "keel: a Kafka-compatible broker on a thread-per-core engine",
    args_override_self = true
)]
pub struct Config {
    /// A TOML file with any of these settings (keys as the flags, with `_` or `-`). Flags win
    /// over the file.
    #[arg(long)]
    pub config: Option<PathBuf>,

    /// Where topics, partitions and broker state are stored.
    #[arg(long, default_value = "./keel-data")]
    pub data_dir: PathBuf,
    /// host:port to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub listen: String,
    /// host:port that clients are told to connect to. Default: the listen address.
    #[arg(long)]
    pub advertised_listener: Option<String>,
    /// Number of shards (one pinned executor thread each). Default: the cores available.
    #[arg(long, default_value_t = available_cores())]
    pub shards: usize,
    /// Durability of appends: always, never or interval_ms:N.
    #[arg(long, default_value_t = FsyncPolicy::Always)]
    pub fsync: FsyncPolicy,
    /// File I/O path: auto (glommio, or pwrite where io_uring is denied), glommio, uring or
    /// pwrite. The on-disk format is the same for all.
    #[arg(long, env = "KEEL_IO_BACKEND", value_enum, default_value_t = IoBackendChoice::Auto)]
    pub io_backend: IoBackendChoice,
    /// Group commit: appends queued while a write or fdatasync runs share the next one. Off,
    /// every append gets its own write and fdatasync (a baseline for measurements).
    #[arg(long, default_value_t = engine_defaults().group_commit, action = clap::ArgAction::Set)]
    pub group_commit: bool,
    /// pwrite backend: O_DIRECT (true) or through the page cache (false).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub pwrite_direct: bool,
    /// uring backend: ring entries per shard, the most I/O operations in flight per shard.
    #[arg(long, default_value_t = uring_defaults().depth)]
    pub uring_depth: u32,
    /// uring backend: a kernel thread polls the submission queue (no system call per submit).
    #[arg(long, env = "KEEL_URING_SQPOLL", default_value_t = uring_defaults().sqpoll, action = clap::ArgAction::Set)]
    pub uring_sqpoll: bool,
    /// uring backend: register a pool of write buffers with the ring.
    #[arg(long, env = "KEEL_URING_FIXED_BUFFERS", default_value_t = uring_defaults().fixed_buffers, action = clap::ArgAction::Set)]
    pub uring_fixed_buffers: bool,
    /// uring backend: registered write buffers per shard.
    #[arg(long, default_value_t = uring_defaults().fixed_buffer_count)]
    pub uring_fixed_buffer_count: u16,
    /// uring backend: bytes of each registered write buffer (larger writes use plain ones).
    #[arg(long, default_value_t = uring_defaults().fixed_buffer_bytes)]
    pub uring_fixed_buffer_bytes: usize,
    /// uring backend: register file descriptors with the ring.
    #[arg(long, env = "KEEL_URING_FIXED_FILES", default_value_t = uring_defaults().fixed_files, action = clap::ArgAction::Set)]
    pub uring_fixed_files: bool,
    /// uring backend: link an fdatasync after every write (used with fsync=always only).
    #[arg(long, env = "KEEL_URING_LINKED_SYNC", default_value_t = uring_defaults().linked_sync, action = clap::ArgAction::Set)]
    pub uring_linked_sync: bool,
    /// Create a topic on first use (Metadata or Produce) with `default_partitions`.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub auto_create_topics: bool,
    /// Partitions of an auto-created topic, and of CreateTopics with num_partitions -1.
    #[arg(long, default_value_t = 1)]
    pub default_partitions: i32,

    /// A segment rolls when the next batch would take it past this size (segment.bytes).
    #[arg(long, default_value_t = topic_defaults().segment_bytes_max)]
    pub segment_bytes_max: u64,
    /// A segment rolls when its first batch is older than this (segment.ms).
    #[arg(long, default_value_t = topic_defaults().segment_ms)]
    pub segment_ms: u64,
    /// Closed segments older than this are deleted; -1 keeps forever (retention.ms).
    #[arg(long, default_value_t = topic_defaults().retention_ms, allow_hyphen_values = true)]
    pub retention_ms: i64,
    /// Oldest segments are deleted while a partition is larger; -1: no limit (retention.bytes).
    #[arg(long, default_value_t = topic_defaults().retention_bytes, allow_hyphen_values = true)]
    pub retention_bytes: i64,
    /// One sparse index entry per this many bytes of log (index.interval.bytes).
    #[arg(long, default_value_t = topic_defaults().index_interval_bytes)]
    pub index_interval_bytes: u32,
    /// How often each shard checks retention and segment age.
    #[arg(long, default_value_t = engine_defaults().retention_check_ms)]
    pub retention_check_ms: u64,

    /// Largest request frame accepted; a longer frame closes the connection
    /// (socket.request.max.bytes).
    #[arg(long, default_value_t = 100 << 20)]
    pub request_bytes_max: usize,
    /// Bytes of large request frames (over 16 KiB) each shard holds at once, read or being
    /// handled; past it, connections wait before reading more (queued.max.request.bytes).
    #[arg(long, default_value_t = 512 << 20)]
    pub request_memory_bytes_max: usize,
    /// Bytes of Fetch answers each shard holds at once, from the read until the answer is
    /// written: the record bytes, plus 68 KiB per partition that returned any for the read
    /// buffer they may pin. Past it, a fetch answers with less data (at least one batch), or
    /// waits for memory until its max_wait_ms and then answers with none; clients fetch again.
    #[arg(long, default_value_t = 256 << 20)]
    pub response_memory_bytes_max: usize,
    /// Requests of one connection worked on at once. Consecutive Produce requests (v3 and
    /// later) overlap: the next starts once the previous one's batches are queued, so they
    /// share fdatasyncs, and the answers still go out in request order. Any other request
    /// waits until those before it are answered. 1 handles one request at a time, as Kafka.
    #[arg(long, default_value_t = 8)]
    pub connection_in_flight_max: usize,
    /// Open client connections at once, over all shards; past it new ones are closed.
    #[arg(long, default_value_t = 10_000)]
    pub connections_max: usize,
    /// A connection on which no whole request arrives for this long is closed
    /// (connections.max.idle.ms), and so is one whose client takes longer than this to read
    /// an answer (which frees the memory the answer holds); clients reconnect when they need to.
    #[arg(long, default_value_t = 600_000)]
    pub connection_idle_ms_max: u64,
    /// Longest a Fetch may wait for data, whatever its max_wait_ms asks.
    #[arg(long, default_value_t = 30_000)]
    pub fetch_wait_ms_max: u64,
    /// Largest Fetch answer, whatever its max_bytes asks (fetch.max.bytes); the first batch
    /// found is sent whole even past it.
    #[arg(long, default_value_t = 55 << 20)]
    pub fetch_bytes_max: usize,
    /// How long shutdown waits for in-flight requests before closing connections anyway.
    #[arg(long, default_value_t = 30_000)]
    pub shutdown_wait_ms_max: u64,

    /// Largest record batch accepted (message.max.bytes).
    #[arg(long, default_value_t = engine_defaults().batch_bytes_max)]
    pub batch_bytes_max: usize,
    /// Bytes of recent batches each shard keeps in memory for reads.
    #[arg(long, default_value_t = engine_defaults().batch_cache_bytes_max)]
    pub batch_cache_bytes_max: usize,
    /// Bytes a partition may hold queued before appends wait.
    #[arg(long, default_value_t = engine_defaults().append_queue_bytes_max)]
    pub append_queue_bytes_max: usize,
    /// Largest single write handed to the disk.
    #[arg(long, default_value_t = engine_defaults().write_bytes_max)]
    pub write_bytes_max: usize,
    /// Largest answer one partition read may return.
    #[arg(long, default_value_t = engine_defaults().read_bytes_max)]
    pub read_bytes_max: usize,
    /// Topics the broker may hold.
    #[arg(long, default_value_t = engine_defaults().topics_max)]
    pub topics_max: usize,
    /// Partitions one topic may have.
    #[arg(long, default_value_t = engine_defaults().partitions_per_topic_max)]
    pub partitions_per_topic_max: usize,
    /// Partitions the broker may hold in all.
    #[arg(long, default_value_t = engine_defaults().partitions_max)]
    pub partitions_max: usize,
    /// Cross-shard request queue depth per shard.
    #[arg(long, default_value_t = engine_defaults().shard_queue_max)]
    pub shard_queue_max: usize,
    /// Memory glommio registers for io_uring per shard.
    #[arg(long, default_value_t = engine_defaults().io_memory_bytes)]
    pub io_memory_bytes: usize,
    /// Depth of each io_uring ring.
    #[arg(long, default_value_t = engine_defaults().ring_depth)]
    pub ring_depth: usize,
    /// Bytes by which segment files are preallocated.
    #[arg(long, default_value_t = engine_defaults().preallocate_bytes)]
    pub preallocate_bytes: u64,
    /// Log files of retention-deleted segments each partition keeps and reuses as its next
    /// segments instead of new files (0: delete them). Appends into a reused file overwrite
    /// allocated blocks; each spare holds up to a segment's bytes of disk.
    #[arg(long, default_value_t = engine_defaults().segment_spares_max)]
    pub segment_spares_max: usize,
    /// Recent batches remembered per idempotent producer for duplicate detection.
    #[arg(long, default_value_t = engine_defaults().producer_batches_max)]
    pub producer_batches_max: usize,
    /// Idempotent producer ids one partition remembers.
    #[arg(long, default_value_t = engine_defaults().producers_per_partition_max)]
    pub producers_per_partition_max: usize,
    /// Pin each shard to one CPU.
    #[arg(long, default_value_t = engine_defaults().pin_cores, action = clap::ArgAction::Set)]
    pub pin_cores: bool,

    /// Consumer groups the broker holds at once; a JoinGroup or commit that would create one
    /// more is answered GROUP_MAX_SIZE_REACHED.
    #[arg(long, default_value_t = 10_000)]
    pub groups_max: usize,
    /// Members (joined or awaiting their member id) of one group; past it a JoinGroup is
    /// answered GROUP_MAX_SIZE_REACHED (group.max.size).
    #[arg(long, default_value_t = 1000)]
    pub group_members_max: usize,
    /// Largest protocol metadata of one member in a JoinGroup (all its protocols together),
    /// and largest assignment of one member in a SyncGroup; past it MESSAGE_TOO_LARGE.
    #[arg(long, default_value_t = 64 << 10)]
    pub group_metadata_bytes_max: usize,
    /// Largest metadata string of one committed offset; past it OFFSET_METADATA_TOO_LARGE
    /// (offset.metadata.max.bytes).
    #[arg(long, default_value_t = 4096)]
    pub offset_metadata_bytes_max: usize,
    /// Shortest session timeout a member may ask for (group.min.session.timeout.ms).
    #[arg(long, default_value_t = 6000)]
    pub group_min_session_timeout_ms: i32,
    /// Longest session timeout a member may ask for (group.max.session.timeout.ms).
    #[arg(long, default_value_t = 1_800_000)]
    pub group_max_session_timeout_ms: i32,
    /// How long the first rebalance of an empty group waits for more members, extended by
    /// each new member up to the rebalance timeout (group.initial.rebalance.delay.ms).
    #[arg(long, default_value_t = 3000)]
    pub group_initial_rebalance_delay_ms: u64,
    /// Committed offsets of a group that has been empty this long are deleted
    /// (offsets.retention.minutes, in ms).
    #[arg(long, default_value_t = 7 * 24 * 3600 * 1000)]
    pub offsets_retention_ms: u64,
    /// Partitions of the internal `__consumer_offsets` topic, when the broker creates it at
    /// its first start (offsets.topic.num.partitions). Later starts keep the count it has.
    #[arg(long, default_value_t = 8)]
    pub offsets_topic_partitions: i32,
    /// Bytes appended to a partition of `__consumer_offsets` since its last snapshot past
    /// which the coordinator writes a new snapshot of its groups and drops the log before it.
    #[arg(long, default_value_t = 16 << 20)]
    pub offsets_snapshot_bytes: u64,
}

impl Config {
    /// Parses the process arguments and the `--config` file they name.
    ///
    /// # Errors
    /// Bad flags (including `--help` and `--version`, which clap reports as errors to print), an
    /// unreadable or invalid file, or values out of range.
    pub fn load() -> Result<Config, ConfigError> {
        Self::load_from(std::env::args_os())
    }

    /// [`Config::load`] with explicit arguments (the first is the program name).
    ///
    /// # Errors
    /// As [`Config::load`].
    pub fn load_from<I, T>(args: I) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        let cli = Config::try_parse_from(&args)?;
        let config = match &cli.config {
            None => cli,
            Some(path) => {
                let mut merged: Vec<OsString> = args.iter().take(1).cloned().collect();
                merged.extend(file_flags(path)?.into_iter().map(OsString::from));
                merged.extend(args.iter().skip(1).cloned());
                let matches = Config::command().try_get_matches_from(merged)?;
                Config::from_arg_matches(&matches)?
            }
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("shards", self.shards),
            ("connections_max", self.connections_max),
            ("connection_in_flight_max", self.connection_in_flight_max),
            ("shard_queue_max", self.shard_queue_max),
            ("batch_bytes_max", self.batch_bytes_max),
            ("read_bytes_max", self.read_bytes_max),
            ("fetch_bytes_max", self.fetch_bytes_max),
            ("request_memory_bytes_max", self.request_memory_bytes_max),
            ("response_memory_bytes_max", self.response_memory_bytes_max),
            ("write_bytes_max", self.write_bytes_max),
            ("ring_depth", self.ring_depth),
            ("uring_depth", self.uring_depth as usize),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(ConfigError::Invalid(format!("{name} must be positive")));
        }
        if self.connection_idle_ms_max == 0 {
            return Err(ConfigError::Invalid(
                "connection_idle_ms_max must be positive".into(),
            ));
        }
        self.validate_groups()?;
        if self.default_partitions < 1 {
            return Err(ConfigError::Invalid(
                "default_partitions must be at least 1".into(),
            ));
        }
        if self.request_bytes_max < 1024 {
            return Err(ConfigError::Invalid(
                "request_bytes_max must be at least 1024".into(),
            ));
        }
        self.listen_addr()?;
        if let Some(a) = &self.advertised_listener {
            split_host_port(a)?;
        }
        Ok(())
    }

    fn validate_groups(&self) -> Result<(), ConfigError> {
        let positive = [
            ("groups_max", self.groups_max),
            ("group_members_max", self.group_members_max),
            ("group_metadata_bytes_max", self.group_metadata_bytes_max),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(ConfigError::Invalid(format!("{name} must be positive")));
        }
        if self.group_min_session_timeout_ms < 1
            || self.group_max_session_timeout_ms < self.group_min_session_timeout_ms
        {
            return Err(ConfigError::Invalid(
                "group session timeouts: 1 <= min <= max".into(),
            ));
        }
        if self.offsets_topic_partitions < 1 || self.offsets_retention_ms == 0 {
            return Err(ConfigError::Invalid(
                "offsets_topic_partitions and offsets_retention_ms must be positive".into(),
            ));
        }
        Ok(())
    }

    /// The address to bind.
    ///
    /// # Errors
    /// An address that does not resolve.
    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.listen
            .to_socket_addrs()
            .map_err(|e| ConfigError::Invalid(format!("listen {:?}: {e}", self.listen)))?
            .next()
            .ok_or_else(|| {
                ConfigError::Invalid(format!("listen {:?} resolves to nothing", self.listen))
            })
    }

    /// The host and port given to clients, once the real listen address is known (port 0 in
    /// `--listen` becomes the port picked).
    ///
    /// # Errors
    /// An advertised listener that is not host:port.
    pub fn advertised(&self, bound: SocketAddr) -> Result<(String, i32), ConfigError> {
        match &self.advertised_listener {
            Some(a) => split_host_port(a),
            None => Ok((bound.ip().to_string(), i32::from(bound.port()))),
        }
    }

    /// The engine's settings.
    #[must_use]
    pub fn engine(&self) -> EngineConfig {
        let mut e = EngineConfig::new(&self.data_dir);
        e.shards = self.shards;
        e.fsync = self.fsync;
        e.topic_defaults = TopicConfig {
            segment_bytes_max: self.segment_bytes_max,
            segment_ms: self.segment_ms,
            retention_ms: self.retention_ms,
            retention_bytes: self.retention_bytes,
            index_interval_bytes: self.index_interval_bytes,
        };
        e.retention_check_ms = self.retention_check_ms;
        e.batch_bytes_max = self.batch_bytes_max;
        e.batch_cache_bytes_max = self.batch_cache_bytes_max;
        e.append_queue_bytes_max = self.append_queue_bytes_max;
        e.write_bytes_max = self.write_bytes_max;
        e.read_bytes_max = self.read_bytes_max;
        e.topics_max = self.topics_max;
        e.partitions_per_topic_max = self.partitions_per_topic_max;
        e.partitions_max = self.partitions_max;
        e.shard_queue_max = self.shard_queue_max;
        e.io_memory_bytes = self.io_memory_bytes;
        e.ring_depth = self.ring_depth;
        e.preallocate_bytes = self.preallocate_bytes;
        e.segment_spares_max = self.segment_spares_max;
        e.producer_batches_max = self.producer_batches_max;
        e.producers_per_partition_max = self.producers_per_partition_max;
        e.pin_cores = self.pin_cores;
        e.group_commit = self.group_commit;
        // `auto` is settled at start by `resolve_io_backend`; until then, the default.
        e.io_backend = self.io_backend.named().unwrap_or_default();
        e.backend_options = BackendOptions {
            pwrite_direct: self.pwrite_direct,
            uring: UringOptions {
                depth: self.uring_depth,
                sqpoll: self.uring_sqpoll,
                fixed_buffers: self.uring_fixed_buffers,
                fixed_buffer_count: self.uring_fixed_buffer_count,
                fixed_buffer_bytes: self.uring_fixed_buffer_bytes,
                fixed_files: self.uring_fixed_files,
                linked_sync: self.uring_linked_sync,
                ..uring_defaults()
            },
        };
        e
    }

    /// The backend to run on: the one named, or for `auto` glommio when io_uring can be set
    /// up in this process and pwrite when it cannot (logged in one line, with the reason).
    ///
    /// # Errors
    /// A backend that needs io_uring was named, and io_uring cannot be set up here.
    pub fn resolve_io_backend(&self) -> Result<IoBackend, ConfigError> {
        let probe = keel_engine::rt::probe_io_uring();
        let Some(named) = self.io_backend.named() else {
            return Ok(match probe {
                Ok(()) => IoBackend::Glommio,
                Err(e) => {
                    tracing::warn!(error = %e, "io_uring cannot be set up here: running on the pwrite backend (plain pwrite/fdatasync, epoll sockets); --io-backend pwrite silences this");
                    IoBackend::Pwrite
                }
            });
        };
        match probe {
            Err(e) if named.needs_io_uring() => Err(ConfigError::Invalid(format!(
                "--io-backend {named} needs io_uring, which this process cannot set up ({e}); use --io-backend pwrite or auto"
            ))),
            _ => Ok(named),
        }
    }
}

fn split_host_port(s: &str) -> Result<(String, i32), ConfigError> {
    let bad = || ConfigError::Invalid(format!("{s:?} is not host:port"));
    let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || port == 0 {
        return Err(bad());
    }
    Ok((host.to_string(), i32::from(port)))
}

/// Reads a TOML file and turns each `key = value` into `--key=value`.
fn file_flags(path: &Path) -> Result<Vec<String>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let file_err = |reason: String| ConfigError::File {
        path: path.to_path_buf(),
        reason,
    };
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| file_err(e.to_string()))?;
    let mut flags = Vec::with_capacity(table.len());
    for (key, value) in table {
        let flag = key.replace('_', "-");
        if flag == "config" {
            return Err(file_err("a config file cannot name another".into()));
        }
        let value = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => {
                return Err(file_err(format!(
                    "{key}: a string, integer or boolean is expected, not {}",
                    other.type_str()
                )))
            }
        };
        flags.push(format!("--{flag}={value}"));
    }
    Ok(flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse() -> Result<(), ConfigError> {
        let c = Config::load_from(["keel"])?;
        assert_eq!(c.listen, "127.0.0.1:9092");
        assert_eq!(c.data_dir, PathBuf::from("./keel-data"));
        assert!(c.auto_create_topics);
        assert_eq!(c.default_partitions, 1);
        assert_eq!(c.request_bytes_max, 100 << 20);
        assert_eq!(c.fsync, FsyncPolicy::Always);
        assert_eq!(
            c.advertised(
                "127.0.0.1:9092"
                    .parse()
                    .map_err(|_| ConfigError::Invalid(String::new()))?
            )?,
            ("127.0.0.1".to_string(), 9092)
        );
        Ok(())
    }

    #[test]
    fn file_then_flags() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("keel.toml");
        std::fs::write(
            &path,
            "default_partitions = 3\nfsync = \"interval_ms:5\"\nauto-create-topics = false\nretention_ms = -1\n",
        )?;
        let p = path.to_string_lossy().into_owned();
        let c = Config::load_from(["keel", "--config", &p, "--default-partitions", "4"])?;
        assert_eq!(c.default_partitions, 4, "the flag wins over the file");
        assert_eq!(c.fsync, FsyncPolicy::IntervalMs(5));
        assert!(!c.auto_create_topics);
        assert_eq!(c.retention_ms, -1);
        Ok(())
    }

    #[test]
    fn unknown_file_key_is_an_error() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("keel.toml");
        std::fs::write(&path, "no_such_setting = 1\n")?;
        let p = path.to_string_lossy().into_owned();
        assert!(Config::load_from(["keel", "--config", &p]).is_err());
        Ok(())
    }

    #[test]
    fn bad_values_are_rejected() {
        assert!(Config::load_from(["keel", "--shards", "0"]).is_err());
        assert!(Config::load_from(["keel", "--fsync", "sometimes"]).is_err());
        assert!(Config::load_from(["keel", "--default-partitions", "0"]).is_err());
        assert!(Config::load_from(["keel", "--advertised-listener", "nohost"]).is_err());
    }
}
