//! A client connection: buffered reads cut into frames, and responses written in order.
//!
//! Kafka frames every request and response with a 4-byte big-endian length. The length is
//! checked before anything is allocated for the frame: a frame shorter than a request header or
//! longer than `request_bytes_max` closes the connection, so a client can make the broker hold
//! at most one frame (plus a small read-ahead) per connection.
//!
//! ```text
//!  buf: [len][frame.......][len][fra|   (read-ahead of the next frame)
//!        └─ split_to ─────┘            → Bytes shared with buf, no copy
//! ```
//! A large frame first takes its size from the shard's request memory budget
//! (`request_memory_bytes_max`), and holds it until its response is written: past the budget,
//! connections stop reading until earlier requests finish.
//!
//! A frame is split off the read buffer as `Bytes`, so the record batches a produce carries are
//! slices of that buffer all the way to the engine; the body of a large frame is read straight
//! into it by the socket, small reads go through a fixed scratch buffer.

use std::rc::Rc;

use bytes::{Buf, Bytes, BytesMut};
use futures::{AsyncReadExt, AsyncWriteExt};
use keel_engine::rt::{Budget, BudgetPermit, TcpStream};

use crate::error::ConnectionError;

/// The smallest request: api key, api version, correlation id (2 + 2 + 4 bytes).
pub const FRAME_BYTES_MIN: usize = 8;

/// Bytes read at once for small frames, so that pipelined small requests arrive in one read;
/// the rest of a frame larger than this is read straight into its buffer.
const READ_AHEAD_BYTES: usize = 16 * 1024;

/// An idle read buffer larger than this is dropped rather than kept for the connection's life.
const IDLE_BUFFER_BYTES_MAX: usize = 1 << 20;

const _: () = assert!(READ_AHEAD_BYTES <= IDLE_BUFFER_BYTES_MAX);

/// A request frame, holding its share of the shard's request memory until dropped.
#[derive(Debug)]
pub struct Frame {
    /// The frame without its length prefix.
    pub bytes: Bytes,
    _memory: Option<BudgetPermit>,
}

/// A framed client connection.
pub struct Connection {
    stream: TcpStream,
    /// Bytes received and not yet handed out as frames.
    buf: BytesMut,
    /// How many bytes of `buf` are valid: a read cancelled while it wrote straight into `buf`
    /// leaves zero-fill past this point, which the next call cuts off.
    valid: usize,
    /// Small reads land here first, so that a read of a few bytes does not zero-fill a buffer.
    scratch: Box<[u8]>,
    request_bytes_max: usize,
    /// The shard's request memory budget, and this connection's share of it for the frame
    /// being read.
    memory: Rc<Budget>,
    memory_bytes_max: usize,
    permit: Option<BudgetPermit>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("buffered", &self.valid)
            .field("holds_memory", &self.permit.is_some())
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Wraps an accepted stream; large frames take their size from `memory`, which holds
    /// `memory_bytes_max` in all.
    #[must_use]
    pub fn new(
        stream: TcpStream,
        request_bytes_max: usize,
        memory: Rc<Budget>,
        memory_bytes_max: usize,
    ) -> Self {
        Connection {
            stream,
            buf: BytesMut::with_capacity(READ_AHEAD_BYTES),
            valid: 0,
            scratch: vec![0; READ_AHEAD_BYTES].into_boxed_slice(),
            request_bytes_max,
            memory,
            memory_bytes_max,
            permit: None,
        }
    }

    /// The next whole frame (without its length prefix), or `None` when the client closed the
    /// connection between frames. Cancel-safe: bytes already read stay buffered.
    ///
    /// # Errors
    /// A frame length out of bounds, a connection closed mid-frame, or a socket error.
    pub async fn read_frame(&mut self) -> Result<Option<Frame>, ConnectionError> {
        self.buf.truncate(self.valid);
        loop {
            let need = match self.frame_length()? {
                Some(len) if self.buf.len() >= 4 + len => {
                    self.buf.advance(4);
                    let bytes = self.buf.split_to(len).freeze();
                    self.valid = self.buf.len();
                    return Ok(Some(Frame {
                        bytes,
                        _memory: self.permit.take(),
                    }));
                }
                Some(len) => 4 + len,
                None => 4,
            };
            if self.buf.is_empty() && self.buf.capacity() > IDLE_BUFFER_BYTES_MAX {
                self.buf = BytesMut::with_capacity(READ_AHEAD_BYTES);
            }
            let have = self.buf.len();
            let n = if need - have > self.scratch.len() {
                if self.permit.is_none() {
                    // A frame larger than the whole budget takes all of it.
                    let units = need.min(self.memory_bytes_max) as u64;
                    self.permit = Some(self.memory.acquire(units).await);
                }
                // The rest of a large frame: read straight into place (zero-filled first, as
                // the reader wants an initialised slice; the frame is about to fill it).
                self.buf.resize(need, 0);
                let read = self.stream.read(&mut self.buf[have..]).await;
                self.buf.truncate(have + read.as_ref().map_or(0, |n| *n));
                read.map_err(|source| ConnectionError::Io { op: "read", source })?
            } else {
                let n = self
                    .stream
                    .read(&mut self.scratch)
                    .await
                    .map_err(|source| ConnectionError::Io { op: "read", source })?;
                self.buf.extend_from_slice(&self.scratch[..n]);
                n
            };
            self.valid = self.buf.len();
            if n == 0 {
                if have == 0 {
                    return Ok(None);
                }
                return Err(ConnectionError::Truncated { have, need });
            }
        }
    }

    /// The length of the frame at the head of the buffer, once its prefix is there, checked.
    fn frame_length(&self) -> Result<Option<usize>, ConnectionError> {
        frame_length(&self.buf, self.request_bytes_max)
    }

    /// Writes one response (already framed), chunk after chunk, and flushes.
    ///
    /// # Errors
    /// A socket error (the client went away).
    pub async fn write_response(&mut self, chunks: &[Bytes]) -> Result<(), ConnectionError> {
        for chunk in chunks {
            self.stream
                .write_all(chunk)
                .await
                .map_err(|source| ConnectionError::Io {
                    op: "write",
                    source,
                })?;
        }
        self.stream
            .flush()
            .await
            .map_err(|source| ConnectionError::Io {
                op: "flush",
                source,
            })
    }
}

/// The checked length of the frame at the head of `buf` (without its 4-byte prefix), or
/// `None` while fewer than 4 bytes are there: the frame reader's one decision about bytes
/// from the socket, a function of its own so the fuzz target can drive it.
///
/// # Errors
/// A length below [`FRAME_BYTES_MIN`] (negative included) or above `request_bytes_max`.
pub fn frame_length(
    buf: &[u8],
    request_bytes_max: usize,
) -> Result<Option<usize>, ConnectionError> {
    let Some(prefix) = buf.get(..4) else {
        return Ok(None);
    };
    let length = i32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
    let bad = || ConnectionError::FrameLength {
        length: i64::from(length),
        max: request_bytes_max,
    };
    let len = usize::try_from(length).map_err(|_| bad())?;
    if len < FRAME_BYTES_MIN || len > request_bytes_max {
        return Err(bad());
    }
    Ok(Some(len))
}
