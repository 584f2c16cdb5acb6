//! Shutdown: SIGTERM or SIGINT stops the broker cleanly; a second one exits at once.
//!
//! ```text
//! signal thread (sigwait) ── first signal ──▶ AtomicBool ◀── polled by a watcher task per shard
//!                          └─ second signal ─▶ _exit          │ fires
//!                                                             ▼
//!                                   ShutdownSignal: accept loop, idle reads, fetch long polls
//! ```
//! The signals are blocked in every thread (threads inherit the mask of the thread that made
//! them, so [`install`] must run before any other thread starts) and taken by one thread with
//! `sigwait`, so no code runs in a signal handler. Shards cannot be woken from a foreign thread
//! cheaply, so each polls the flag every [`POLL_MS`]: that is the delay between the signal and
//! the accept loops stopping.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use futures::{
    future::{LocalBoxFuture, Shared},
    FutureExt,
};

/// How often each shard looks at the shutdown flag.
pub const POLL_MS: u64 = 20;

/// The process-wide shutdown flag.
#[derive(Debug, Clone, Default)]
pub struct ShutdownFlag(Arc<AtomicBool>);

impl ShutdownFlag {
    /// Asks every shard to stop.
    pub fn trigger(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Whether shutdown was asked for.
    #[must_use]
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Blocks SIGINT and SIGTERM in this thread (and so in every thread it starts later) and
/// starts the thread that waits for them.
///
/// # Errors
/// The signal mask could not be set or the thread not started.
pub fn install(flag: ShutdownFlag) -> std::io::Result<()> {
    // SAFETY: the set is initialised by sigemptyset before use; pthread_sigmask only reads it.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&raw mut set);
        libc::sigaddset(&raw mut set, libc::SIGINT);
        libc::sigaddset(&raw mut set, libc::SIGTERM);
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &raw const set, std::ptr::null_mut());
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc));
        }
        set
    };
    std::thread::Builder::new()
        .name("keel-signals".into())
        .spawn(move || wait_for_signals(&set, &flag))?;
    Ok(())
}

fn wait_for_signals(set: &libc::sigset_t, flag: &ShutdownFlag) {
    let mut seen = 0;
    loop {
        let mut sig: libc::c_int = 0;
        // SAFETY: `set` is a valid signal set and `sig` a valid place for the answer.
        let rc = unsafe { libc::sigwait(set, &raw mut sig) };
        if rc != 0 {
            continue;
        }
        seen += 1;
        if seen == 1 {
            tracing::info!(signal = sig, "shutting down: finishing in-flight requests");
            flag.trigger();
        } else {
            tracing::warn!(signal = sig, "second signal: exiting now");
            // SAFETY: _exit ends the process without running anything else; recovery at the
            // next start handles whatever was in flight.
            unsafe { libc::_exit(130) };
        }
    }
}

/// A shard-local future that completes when shutdown starts. Cheap to clone.
#[derive(Clone)]
pub struct ShutdownSignal {
    flag: ShutdownFlag,
    fired: Shared<LocalBoxFuture<'static, ()>>,
}

impl std::fmt::Debug for ShutdownSignal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShutdownSignal")
            .field("set", &self.flag.is_set())
            .finish_non_exhaustive()
    }
}

impl ShutdownSignal {
    /// Starts this shard's watcher of the flag. Call on the shard's executor.
    #[must_use]
    pub fn spawn_watcher(flag: &ShutdownFlag) -> Self {
        let watched = flag.clone();
        let watcher = keel_engine::rt::spawn_local(async move {
            while !watched.is_set() {
                keel_engine::rt::sleep(Duration::from_millis(POLL_MS)).await;
            }
        });
        ShutdownSignal {
            flag: flag.clone(),
            fired: watcher.boxed_local().shared(),
        }
    }

    /// Whether shutdown started.
    #[must_use]
    pub fn is_set(&self) -> bool {
        self.flag.is_set()
    }
}

impl Future for ShutdownSignal {
    type Output = ();

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        Pin::new(&mut self.fired).poll(cx)
    }
}
