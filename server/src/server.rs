//! The broker's life on one shard: bind, accept, serve connections, drain at shutdown.
//!
//! Every shard binds the same address (SO_REUSEPORT) and the kernel spreads new connections
//! between them. The listeners also set SO_REUSEADDR, as Kafka's (Java's) do: a broker
//! restarted right after a crash must be able to bind while the dead process's connections
//! linger in FIN_WAIT2 or TIME_WAIT. The first shard binds first, so that `--listen host:0` picks one
//! port that every other shard then binds too. A connection lives on the shard that accepted
//! it; requests for partitions owned elsewhere travel through the engine's `Shard` handle.
//!
//! A connection answers in the order it received. Kafka's broker runs one request of a
//! connection at a time; keel does too, except that consecutive Produce requests overlap: the
//! next starts once the previous one's batches are queued on their partitions (that order is
//! what keeps an idempotent producer's batches in sequence), so they share fdatasyncs instead
//! of each waiting out its own. See [`serve_requests`].

use std::{
    cell::Cell,
    net::SocketAddr,
    rc::Rc,
    sync::Arc,
    time::{Duration, Instant},
};

use futures::{
    channel::oneshot,
    future::{select, Either, LocalBoxFuture},
    stream::{FuturesOrdered, StreamExt},
};
use keel_engine::{
    rt::{self, TcpListener, TcpStream},
    Shard,
};

use crate::{
    broker::{Broker, ConnectionSlot, Ctx},
    codec::{encode_response, parse_frame, Parsed},
    connection::{Connection, Frame},
    error::ConnectionError,
    handlers,
    shutdown::{ShutdownSignal, POLL_MS},
};

/// Runs the broker on one shard until shutdown; the engine's `main` for each shard.
pub async fn shard_main(shard: Shard, broker: Arc<Broker>) {
    let shutdown = ShutdownSignal::spawn_watcher(&broker.shutdown);
    // Groups are loaded before the shard listens, so "ready" includes them.
    if let Err(e) = crate::group::start(&shard, &broker).await {
        tracing::error!(shard = shard.id(), error = %e, "group coordinator cannot start");
        broker.fail();
        return;
    }
    let listener = match bind(&shard, &broker).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(shard = shard.id(), error = %e, "cannot listen");
            broker.fail();
            return;
        }
    };
    let request_memory = Rc::new(rt::Budget::new(
        broker.config.request_memory_bytes_max as u64,
    ));
    let response_memory = Rc::new(rt::Budget::new(
        broker.config.response_memory_bytes_max as u64,
    ));
    let ctx = Ctx {
        shard,
        broker,
        shutdown,
        request_memory,
        response_memory,
        peer: None,
    };
    let live = Rc::new(Cell::new(0usize));
    accept_loop(&ctx, &listener, &live).await;
    drop(listener);
    drain(&ctx, &live).await;
}

async fn bind(shard: &Shard, broker: &Broker) -> Result<TcpListener, String> {
    let addr = if shard.id() == 0 {
        probe_free(broker.config.listen_addr().map_err(|e| e.to_string())?)?
    } else {
        loop {
            if let Some(addr) = broker.bound_addr() {
                break addr;
            }
            if broker.failed() || broker.shutdown.is_set() {
                return Err("shard 0 did not bind".into());
            }
            rt::sleep(Duration::from_millis(1)).await;
        }
    };
    let listener = listen(addr).map_err(|e| format!("bind {addr}: {e}"))?;
    let bound = listener
        .local_addr()
        .map_err(|e| format!("local address: {e}"))?;
    if shard.id() == 0 {
        let advertised = broker.config.advertised(bound).map_err(|e| e.to_string())?;
        broker.set_bound(bound, advertised);
    }
    if broker.shard_bound() {
        let (host, port) = broker.advertised();
        tracing::info!(
            addr = %bound,
            advertised = %format!("{host}:{port}"),
            shards = broker.config.shards,
            "keel ready on {bound}"
        );
    }
    Ok(listener)
}

/// A listening socket on `addr` with SO_REUSEPORT (every shard binds it) and SO_REUSEADDR
/// (connections left over from a killed broker, which carry the option too, do not block the
/// next start), handed to the shard's runtime.
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let sk = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    sk.set_reuse_address(true)?;
    sk.set_reuse_port(true)?;
    sk.bind(&addr.into())?;
    sk.listen(1024)?;
    TcpListener::from_std(sk.into())
}

/// Checks that no other process listens on `addr` (with SO_REUSEPORT a second broker would
/// silently share the port) by binding it without that option, and picks the port for port 0.
///
/// The bind also fails while the previous run's connections sit in TIME_WAIT (the broker
/// closed them first, as it does to connected consumers at shutdown; glommio's sockets lack
/// SO_REUSEADDR). Those do not stop the real SO_REUSEPORT bind, so a port in use is refused
/// only if something accepts a connection on it.
fn probe_free(addr: SocketAddr) -> Result<SocketAddr, String> {
    match std::net::TcpListener::bind(addr) {
        Ok(probe) => probe
            .local_addr()
            .map_err(|e| format!("local address: {e}")),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && addr.port() != 0 => {
            let target = if addr.ip().is_unspecified() {
                SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
            } else {
                addr
            };
            match std::net::TcpStream::connect_timeout(&target, Duration::from_millis(500)) {
                Err(c) if c.kind() == std::io::ErrorKind::ConnectionRefused => Ok(addr),
                _ => Err(format!("bind {addr}: {e}")),
            }
        }
        Err(e) => Err(format!("bind {addr}: {e}")),
    }
}

async fn accept_loop(ctx: &Ctx, listener: &TcpListener, live: &Rc<Cell<usize>>) {
    loop {
        let accepted = match select(Box::pin(listener.accept()), ctx.shutdown.clone()).await {
            Either::Left((accepted, _)) => accepted,
            Either::Right(((), _)) => return,
        };
        let stream = match accepted {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors and the like: wait a little rather than spin.
                tracing::warn!(error = %e, "accept failed");
                rt::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Some(slot) = ctx.broker.try_open_connection() else {
            tracing::warn!(
                max = ctx.broker.config.connections_max,
                "connections_max reached: closing a new connection"
            );
            continue;
        };
        live.set(live.get() + 1);
        let (mut ctx, live) = (ctx.clone(), Rc::clone(live));
        ctx.peer = stream.peer_addr().ok();
        rt::spawn_local(async move {
            serve(&ctx, stream, slot).await;
            live.set(live.get() - 1);
        })
        .detach();
    }
}

/// Waits for this shard's connections to finish their in-flight requests and close, at most
/// `shutdown_wait_ms_max`.
async fn drain(ctx: &Ctx, live: &Rc<Cell<usize>>) {
    let until = Instant::now() + Duration::from_millis(ctx.broker.config.shutdown_wait_ms_max);
    while live.get() > 0 && Instant::now() < until {
        rt::sleep(Duration::from_millis(POLL_MS)).await;
    }
    if live.get() > 0 {
        tracing::warn!(
            shard = ctx.shard.id(),
            connections = live.get(),
            "shutdown: connections still busy, closing them"
        );
    }
}

async fn serve(ctx: &Ctx, stream: TcpStream, _slot: ConnectionSlot) {
    let peer = stream.peer_addr().ok();
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "set_nodelay failed");
    }
    let config = &ctx.broker.config;
    let mut conn = Connection::new(
        stream,
        config.request_bytes_max,
        Rc::clone(&ctx.request_memory),
        config.request_memory_bytes_max,
    );
    match serve_requests(ctx, &mut conn).await {
        Ok(()) => tracing::debug!(peer = ?peer, "connection closed"),
        Err(e) => log_closed(peer, &e),
    }
}

fn log_closed(peer: Option<SocketAddr>, e: &ConnectionError) {
    match e {
        ConnectionError::Io { .. }
        | ConnectionError::Truncated { .. }
        | ConnectionError::Idle { .. } => {
            tracing::debug!(peer = ?peer, error = %e, "connection lost");
        }
        ConnectionError::Encode { .. } => {
            tracing::error!(peer = ?peer, error = %e, "closing connection");
        }
        _ => tracing::info!(peer = ?peer, error = %e, "closing connection"),
    }
}

/// What the connection waits for next.
enum Event {
    Frame(Result<Option<Frame>, ConnectionError>),
    Answered(Result<Option<handlers::Answer>, ConnectionError>),
    Dispatched,
    Shutdown,
    Idle,
}

type InFlight<'a> =
    FuturesOrdered<LocalBoxFuture<'a, Result<Option<handlers::Answer>, ConnectionError>>>;

/// Serves a connection's requests, answering in the order they came.
///
/// A Produce (v3+) starts while the ones before it still wait to be durable, once their
/// batches are queued (which keeps each partition's batches in request order), up to
/// `connection_in_flight_max` at once; any other request waits until everything before it
/// is answered and then runs alone. A frame (and the request memory it holds) lives until its
/// answer is written.
async fn serve_requests(ctx: &Ctx, conn: &mut Connection) -> Result<(), ConnectionError> {
    let config = &ctx.broker.config;
    let idle_max = Duration::from_millis(config.connection_idle_ms_max);
    let mut in_flight: InFlight<'_> = FuturesOrdered::new();
    // The last pipelined request's "batches queued" signal, until it fires.
    let mut dispatching: Option<oneshot::Receiver<()>> = None;
    // A request that must run alone, read (and parsed) while others were in flight.
    let mut held: Option<(Frame, Parsed)> = None;
    loop {
        if in_flight.is_empty() {
            if let Some((frame, parsed)) = held.take() {
                if let Some(answer) = run_alone(ctx, parsed).await? {
                    write_answer(ctx, conn, &answer, idle_max).await?;
                }
                drop(frame);
                if ctx.shutdown.is_set() {
                    return Ok(());
                }
                continue;
            }
        }
        let idle = in_flight.is_empty();
        let may_read = held.is_none()
            && dispatching.is_none()
            && in_flight.len() < config.connection_in_flight_max;
        let event = {
            let read = async {
                if may_read {
                    Event::Frame(conn.read_frame().await)
                } else {
                    futures::future::pending().await
                }
            };
            let answered = async {
                match in_flight.next().await {
                    Some(answer) => Event::Answered(answer),
                    None => futures::future::pending().await,
                }
            };
            let dispatched = async {
                match dispatching.as_mut() {
                    // Fired or dropped: either way the next request may start.
                    Some(rx) => {
                        let _ = rx.await;
                        Event::Dispatched
                    }
                    None => futures::future::pending().await,
                }
            };
            let stop = async {
                if idle {
                    match select(ctx.shutdown.clone(), Box::pin(rt::sleep(idle_max))).await {
                        Either::Left(_) => Event::Shutdown,
                        Either::Right(_) => Event::Idle,
                    }
                } else {
                    futures::future::pending().await
                }
            };
            let (read, answered, dispatched, stop) = (
                Box::pin(read),
                Box::pin(answered),
                Box::pin(dispatched),
                Box::pin(stop),
            );
            match select(select(read, answered), select(dispatched, stop)).await {
                Either::Left((Either::Left((e, _)) | Either::Right((e, _)), _))
                | Either::Right((Either::Left((e, _)) | Either::Right((e, _)), _)) => e,
            }
        };
        match event {
            Event::Frame(frame) => {
                let Some(frame) = frame? else {
                    // The client closed: answer what is in flight first, as far as it reads.
                    while let Some(answer) = in_flight.next().await {
                        if let Some(answer) = answer? {
                            write_answer(ctx, conn, &answer, idle_max).await?;
                        }
                    }
                    return Ok(());
                };
                match parse_frame(frame.bytes.clone())? {
                    Parsed::Request(req) if handlers::pipelines(&req) => {
                        let (tx, rx) = oneshot::channel();
                        dispatching = Some(rx);
                        in_flight.push_back(Box::pin(async move {
                            let answer = handlers::handle_pipelined(ctx, &req, tx).await;
                            drop(frame);
                            answer
                        }));
                    }
                    parsed => held = Some((frame, parsed)),
                }
            }
            Event::Answered(answer) => {
                if let Some(answer) = answer? {
                    write_answer(ctx, conn, &answer, idle_max).await?;
                }
            }
            Event::Dispatched => dispatching = None,
            Event::Shutdown => return Ok(()),
            Event::Idle => {
                return Err(ConnectionError::Idle {
                    ms: config.connection_idle_ms_max,
                })
            }
        }
        if ctx.shutdown.is_set() && in_flight.is_empty() && held.is_none() {
            return Ok(());
        }
    }
}

/// Runs a request that does not pipeline (or the ApiVersions fallback).
async fn run_alone(ctx: &Ctx, parsed: Parsed) -> Result<Option<handlers::Answer>, ConnectionError> {
    match parsed {
        Parsed::Request(req) => handlers::handle(ctx, &req).await,
        Parsed::ApiVersionsFallback { correlation_id } => {
            Ok(Some(handlers::Answer::from(encode_response(
                kafka_protocol::messages::ApiKey::ApiVersions,
                0,
                correlation_id,
                &handlers::api_versions::unsupported_version(),
            )?)))
        }
    }
}

/// Writes an answer; a client that does not read it within the idle limit loses the
/// connection, which frees the answer and the response memory it holds.
async fn write_answer(
    ctx: &Ctx,
    conn: &mut Connection,
    answer: &handlers::Answer,
    idle_max: Duration,
) -> Result<(), ConnectionError> {
    let write = Box::pin(conn.write_response(&answer.chunks));
    match select(write, Box::pin(rt::sleep(idle_max))).await {
        Either::Left((written, _)) => written,
        Either::Right(_) => Err(ConnectionError::WriteStalled {
            ms: ctx.broker.config.connection_idle_ms_max,
        }),
    }
}
