//! The `keel` binary: parse the settings, start logging, run the broker until a signal.

use std::{io::IsTerminal, process::ExitCode};

use keel_server::{config::Config, shutdown, shutdown::ShutdownFlag};
use tracing_subscriber::EnvFilter;

/// Large allocations are reserved lazily: a length read off the wire cannot abort the broker
/// (see `keel_server::alloc`).
#[global_allocator]
static ALLOC: keel_server::alloc::LazyLargeAlloc = keel_server::alloc::LazyLargeAlloc;

fn main() -> ExitCode {
    let config = match Config::load() {
        Ok(c) => c,
        Err(keel_server::config::ConfigError::Flags(e)) => e.exit(),
        Err(e) => {
            eprintln!("keel: {e}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    // A panic is a bug keel cannot reason past: a half-updated shard must not keep serving.
    // Log it and abort; every acknowledged write is on disk and recovery takes it from there.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        tracing::error!(%info, "panic: aborting so that recovery starts from what is durable");
        std::process::abort();
    }));
    if std::fs::read_to_string("/proc/sys/vm/overcommit_memory").is_ok_and(|m| m.trim() == "2") {
        tracing::warn!("vm.overcommit_memory is 2 (strict): a request declaring a huge length may abort the broker; see keel_server::alloc");
    }
    // Before any other thread starts: the signal mask is inherited by the shards.
    let flag = ShutdownFlag::default();
    if let Err(e) = shutdown::install(flag.clone()) {
        tracing::error!(error = %e, "cannot install the signal handler");
        return ExitCode::FAILURE;
    }
    tracing::info!(
        data_dir = %config.data_dir.display(),
        listen = %config.listen,
        shards = config.shards,
        fsync = %config.fsync,
        "starting keel {}",
        env!("CARGO_PKG_VERSION")
    );
    match keel_server::run(config, flag) {
        Ok(()) => {
            tracing::info!("keel stopped cleanly");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = %e, "keel stopped with an error");
            ExitCode::FAILURE
        }
    }
}
