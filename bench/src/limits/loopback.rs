//! Loopback TCP: the network ceiling of a single-machine benchmark, where client and broker
//! share 127.0.0.1 (and the same cores).
//!
//! - Throughput: one sender thread writes 1 MiB chunks for the duration, one receiver thread
//!   reads them 128 KiB at a time; the figure is bytes received over the receiver's time from accept to EOF.
//! - Round trip: a client sends a small message and waits for an echo thread to send it back,
//!   in a loop; every round trip goes into a histogram of nanoseconds.
//!
//! Both listen on an OS-picked port and set TCP_NODELAY; every socket has a read timeout, so a
//! stuck peer ends the probe with an error instead of hanging it.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::histogram::new_histogram;

/// Bytes per write (and per read buffer) of the throughput probe.
pub const THROUGHPUT_CHUNK_BYTES: usize = 1 << 20;

/// Bytes per read of the throughput receiver. Reads of 1 MiB measured half the throughput of
/// 128 KiB reads on this machine (AMD EPYC, 512 KiB L2 per core): the copy out of the socket
/// then streams through L3 instead of staying in L2. 128 KiB is also iperf3's default, so the
/// two tools agree.
pub const RECEIVE_BUFFER_BYTES: usize = 128 << 10;

/// The message size of [`loopback_rtt`] that the limits run uses.
pub const RTT_MESSAGE_BYTES: usize = 64;

/// The largest round trip kept exactly; a slower one is recorded as this (10 s, in ns).
pub const RTT_NS_MAX: u64 = 10_000_000_000;

/// How long a socket read may block before the probe gives up.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// What the throughput probe measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoopbackThroughput {
    /// Bytes per write of the sender.
    pub chunk_bytes: usize,
    /// Bytes per read of the receiver.
    pub read_bytes: usize,
    pub bytes_received: u64,
    pub elapsed_s: f64,
    /// Decimal gigabits per second, as iperf3 reports.
    pub gbit_per_s: f64,
    /// Decimal megabytes per second.
    pub mb_per_s: f64,
}

/// Streams 1 MiB writes over 127.0.0.1 from one thread to another for `duration`.
pub fn loopback_throughput(duration: Duration) -> anyhow::Result<LoopbackThroughput> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    let addr = listener.local_addr().context("local address of listener")?;
    let receiver = thread::Builder::new()
        .name("loopback-rx".into())
        .spawn(move || receive_all(&listener))
        .context("spawning the receiver thread")?;
    let sent = send_for(addr, duration);
    let received = receiver
        .join()
        .map_err(|_| anyhow!("loopback receiver thread panicked"))?;
    let sent_bytes = sent?;
    let (bytes_received, elapsed) = received?;
    anyhow::ensure!(
        bytes_received == sent_bytes,
        "loopback receiver got {bytes_received} of {sent_bytes} bytes"
    );
    let elapsed_s = elapsed.as_secs_f64().max(f64::MIN_POSITIVE);
    Ok(LoopbackThroughput {
        chunk_bytes: THROUGHPUT_CHUNK_BYTES,
        read_bytes: RECEIVE_BUFFER_BYTES,
        bytes_received,
        elapsed_s,
        gbit_per_s: bytes_received as f64 * 8.0 / 1e9 / elapsed_s,
        mb_per_s: bytes_received as f64 / 1e6 / elapsed_s,
    })
}

/// Connects to `addr` and writes 1 MiB chunks until `duration` has passed, then closes the
/// write side. Returns the bytes sent.
fn send_for(addr: std::net::SocketAddr, duration: Duration) -> anyhow::Result<u64> {
    let mut stream = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true).context("TCP_NODELAY")?;
    let chunk = vec![0x5a_u8; THROUGHPUT_CHUNK_BYTES];
    let deadline = Instant::now() + duration;
    let mut sent_bytes = 0u64;
    while Instant::now() < deadline {
        stream
            .write_all(&chunk)
            .with_context(|| format!("writing to {addr}"))?;
        sent_bytes += chunk.len() as u64;
    }
    stream
        .shutdown(Shutdown::Write)
        .with_context(|| format!("shutting down the write side to {addr}"))?;
    Ok(sent_bytes)
}

/// Accepts one connection, giving up after `timeout`, so that a peer that failed before it
/// connected cannot leave this thread (and the probe joining it) waiting forever.
fn accept_within(
    listener: &TcpListener,
    timeout: Duration,
) -> anyhow::Result<(TcpStream, std::net::SocketAddr)> {
    listener
        .set_nonblocking(true)
        .context("making the listener non-blocking")?;
    let deadline = Instant::now() + timeout;
    loop {
        match listener.accept() {
            Ok((stream, peer)) => {
                stream
                    .set_nonblocking(false)
                    .context("making the accepted stream blocking")?;
                return Ok((stream, peer));
            }
            Err(error) if error.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(1));
            }
            Err(error) => return Err(error).context("accepting a loopback connection"),
        }
    }
}

/// Accepts one connection and reads until EOF; returns bytes read and time from accept to EOF.
fn receive_all(listener: &TcpListener) -> anyhow::Result<(u64, Duration)> {
    let (mut stream, peer) = accept_within(listener, READ_TIMEOUT)?;
    stream
        .set_read_timeout(Some(READ_TIMEOUT))
        .context("setting a read timeout")?;
    let start = Instant::now();
    let mut buf = vec![0u8; RECEIVE_BUFFER_BYTES];
    let mut received_bytes = 0u64;
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Ok((received_bytes, start.elapsed())),
            Ok(n) => received_bytes += n as u64,
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            Err(error) => return Err(error).with_context(|| format!("reading from {peer}")),
        }
    }
}

/// Ping-pongs `message_bytes` over 127.0.0.1 for `duration` and records every round trip, in
/// nanoseconds.
pub fn loopback_rtt(message_bytes: usize, duration: Duration) -> anyhow::Result<Histogram<u64>> {
    anyhow::ensure!(message_bytes > 0, "round-trip message must not be empty");
    let listener = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    let addr = listener.local_addr().context("local address of listener")?;
    let echo = thread::Builder::new()
        .name("loopback-echo".into())
        .spawn(move || echo_until_eof(&listener, message_bytes))
        .context("spawning the echo thread")?;
    let measured = ping_for(addr, message_bytes, duration);
    let echoed = echo
        .join()
        .map_err(|_| anyhow!("loopback echo thread panicked"))?;
    let histogram = measured?;
    echoed?;
    Ok(histogram)
}

fn ping_for(
    addr: std::net::SocketAddr,
    message_bytes: usize,
    duration: Duration,
) -> anyhow::Result<Histogram<u64>> {
    let mut stream = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true).context("TCP_NODELAY")?;
    stream
        .set_read_timeout(Some(READ_TIMEOUT))
        .context("setting a read timeout")?;
    let mut histogram = new_histogram(RTT_NS_MAX)?;
    let ping = vec![0xa5_u8; message_bytes];
    let mut pong = vec![0u8; message_bytes];
    let deadline = Instant::now() + duration;
    loop {
        let sent_at = Instant::now();
        stream
            .write_all(&ping)
            .with_context(|| format!("sending ping to {addr}"))?;
        stream
            .read_exact(&mut pong)
            .with_context(|| format!("reading pong from {addr}"))?;
        let received_at = Instant::now();
        let rtt_ns = u64::try_from((received_at - sent_at).as_nanos()).unwrap_or(u64::MAX);
        histogram.saturating_record(rtt_ns.max(1));
        if received_at >= deadline {
            break;
        }
    }
    stream
        .shutdown(Shutdown::Write)
        .with_context(|| format!("closing the ping side to {addr}"))?;
    Ok(histogram)
}

/// Accepts one connection and echoes fixed-size messages until the peer closes.
fn echo_until_eof(listener: &TcpListener, message_bytes: usize) -> anyhow::Result<()> {
    let (mut stream, peer) = accept_within(listener, READ_TIMEOUT)?;
    stream.set_nodelay(true).context("TCP_NODELAY")?;
    stream
        .set_read_timeout(Some(READ_TIMEOUT))
        .context("setting a read timeout")?;
    let mut message = vec![0u8; message_bytes];
    loop {
        match stream.read_exact(&mut message) {
            Ok(()) => {}
            Err(error) if error.kind() == ErrorKind::UnexpectedEof => return Ok(()),
            Err(error) => return Err(error).with_context(|| format!("reading ping from {peer}")),
        }
        stream
            .write_all(&message)
            .with_context(|| format!("echoing to {peer}"))?;
    }
}
