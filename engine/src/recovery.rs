//! Opening a partition's segments at start, and recovering the active one after a crash.
//!
//! Every segment but the last was finished when it was rolled (log synced and cut to its exact
//! length, indexes written and synced): it is trusted, and only the batches after its last
//! index entry are walked (headers only) to find its end. That last entry is checked first,
//! as below (a corrupt entry is logged with its file and byte, and dropped). Entries further
//! back and the log's CRCs are checked when read (`Segment::read`): corrupt data at rest is
//! reported with its file and position, never served. The last segment is the active one:
//! - after a clean shutdown (the partition's `clean_shutdown` marker exists) it is trusted too;
//! - otherwise its last index entry is checked (the batch there must exist, carry that offset
//!   and pass its CRC; entries are dropped until one does), the log after it is scanned batch
//!   by batch with lengths and CRCs checked, and the log is cut at the first torn or corrupt
//!   batch. Index pages are only written after the fdatasync covering them (see `index`), so
//!   everything before a checked entry is durable. The whole segment's headers are walked to
//!   rebuild the idempotent producer state.

use bytes::Bytes;

use crate::{
    batch::{self, BatchInfo},
    error::{EngineError, Result},
    producers::Producers,
    segment::Segment,
    storage::StorageFile,
    types::Offset,
};

/// What recovery found in one segment.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Batches seen past the trusted point (or all, when walked from 0), for producer state.
    pub batches_walked: u64,
    /// Bytes cut from the end (0 when the segment was whole).
    pub bytes_cut: u64,
}

const CHUNK_BYTES: usize = 1 << 20;

/// Reads a segment's batches from `pos` to `end`, calling `f` with each batch's info and
/// position. With `check_from`, batches at or past that position have their CRC checked.
/// The first batch must carry offset `first`, and each next one the offset after the last:
/// a batch that does not is where the good log ends, like a torn one.
/// Returns the position after the last good batch, and the offset due there.
async fn walk<F: StorageFile>(
    seg: &Segment<F>,
    mut pos: u64,
    end: u64,
    check_from: Option<u64>,
    first: Offset,
    mut f: impl FnMut(&BatchInfo, u64),
) -> Result<(u64, Offset)> {
    let mut expected = first.0;
    let file = seg.log_file();
    let mut chunk = Bytes::new();
    let mut chunk_pos = pos;
    while pos < end {
        let avail = chunk_pos + chunk.len() as u64;
        if pos + batch::HEADER_BYTES as u64 > avail {
            chunk = read(seg, file, pos, CHUNK_BYTES, end).await?;
            chunk_pos = pos;
        }
        let at = usize::try_from(pos - chunk_pos).unwrap_or(0);
        let Ok((_, len)) = batch::peek(&chunk[at..]) else {
            break;
        };
        if pos + len as u64 > end {
            break;
        }
        if pos + len as u64 > chunk_pos + chunk.len() as u64 {
            chunk = read(seg, file, pos, len.max(CHUNK_BYTES), end).await?;
            chunk_pos = pos;
        }
        let at = usize::try_from(pos - chunk_pos).unwrap_or(0);
        let bytes = &chunk[at..at + len];
        let info = if check_from.is_some_and(|c| pos >= c) {
            match batch::validate(bytes, usize::MAX) {
                Ok(i) => i,
                Err(_) => break,
            }
        } else {
            // Headers only, but the two fields that give the next offset must agree (every
            // batch keel stores has lastOffsetDelta = recordCount - 1): a damaged one would
            // otherwise set the log's end, millions of offsets off, if it is the last batch.
            match batch::info(bytes) {
                Ok(i)
                    if i.base_offset >= 0
                        && batch::count_matches_offsets(i.record_count, i.last_offset_delta) =>
                {
                    i
                }
                _ => break,
            }
        };
        if info.base_offset != expected {
            break;
        }
        expected = info.last_offset() + 1;
        f(&info, pos);
        pos += len as u64;
    }
    Ok((pos, Offset(expected)))
}

async fn read<F: StorageFile>(
    seg: &Segment<F>,
    file: &F,
    pos: u64,
    len: usize,
    end: u64,
) -> Result<Bytes> {
    let len = len.min(usize::try_from(end - pos).unwrap_or(usize::MAX));
    file.read_at(pos, len)
        .await
        .map_err(|e| EngineError::io("read", &seg.path, e))
}

/// Recovers one segment and sets its end. `trusted`: finished (rolled or cleanly shut down).
/// Producer state is rebuilt from the batches walked when `producers` is given.
pub async fn recover_segment<F: StorageFile>(
    seg: &Segment<F>,
    trusted: bool,
    index_interval_bytes: u32,
    mut producers: Option<(&mut Producers, usize, usize)>,
) -> Result<Recovered> {
    seg.load_indexes().await?;
    let size = seg
        .log_file()
        .size()
        .await
        .map_err(|e| EngineError::io("stat", &seg.path, e))?;
    // Even a finished segment's last index entry is checked (one batch read): a flipped byte
    // there would otherwise send the walk to the wrong place.
    let start = checked_entry(seg, size).await?;
    let walk_from = if producers.is_some() { 0 } else { start.0 };
    let mut max_ts = -1i64;
    let mut walked = 0u64;
    {
        let mut st = seg.st.borrow_mut();
        st.index
            .truncate_to_position(u32::try_from(start.0).unwrap_or(u32::MAX).saturating_add(1));
        let rel = u32::try_from(start.1 .0 - seg.base.0).unwrap_or(u32::MAX);
        st.time_index.truncate_to_offset(rel.saturating_add(1));
        st.max_timestamp = st.time_index_max();
    }
    let check_from = (!trusted).then_some(start.0);
    let mut note = |info: &BatchInfo, pos: u64| {
        walked += 1;
        if let Some((p, pmax, bmax)) = producers.as_mut() {
            p.record(info, *pmax, *bmax);
        }
        if pos >= start.0 {
            let mut st = seg.st.borrow_mut();
            seg.note_batch(&mut st, info, pos, index_interval_bytes);
        }
        max_ts = max_ts.max(info.max_timestamp);
    };
    if walk_from < start.0 {
        // For producer state: batch headers from 0 up to the checked entry. They are durable
        // (the entry was written after the fdatasync that covers them), so this walk must land
        // exactly on the entry with the entry's offset. If it does not, a header before it is
        // damaged: cutting the log there would drop acknowledged batches, so the log is kept,
        // the damaged batch is reported when a read reaches it (its CRC fails), never served,
        // and producer state misses the batches past the damage.
        let (reached, due) = walk(seg, walk_from, start.0, None, seg.base, &mut note).await?;
        if reached != start.0 || due != start.1 {
            tracing::warn!(
                segment = %seg.path.display(),
                at = reached,
                resumed_at = start.0,
                "damaged batch before the last index entry: kept and reported at read; producer state rebuilt from the index entry on"
            );
        }
    }
    // From the checked entry (or 0) to the end: every CRC checked unless trusted.
    let (end, next) = walk(seg, start.0, size, check_from, start.1, &mut note).await?;
    debug_assert!(
        end > start.0 || start.0 == 0,
        "the checked entry's batch is whole"
    );
    let max_ts = {
        let st = seg.st.borrow();
        max_ts.max(st.max_timestamp).max(st.time_index_max())
    };
    if trusted && end != size {
        return Err(EngineError::Corrupt {
            path: seg.path.clone(),
            pos: end,
            reason: format!(
                "finished segment has {} bytes that are not whole batches",
                size - end
            ),
        });
    }
    let cut = size - end;
    if cut > 0 {
        // Zeros where the next batch header would be: preallocated space, nothing lost.
        // Anything else is a torn or corrupt batch that is being dropped.
        let next = read(
            seg,
            seg.log_file(),
            end,
            batch::HEADER_BYTES.min(usize::try_from(cut).unwrap_or(0)),
            size,
        )
        .await?;
        if next.iter().all(|b| *b == 0) {
            tracing::debug!(segment = %seg.path.display(), at = end, bytes = cut, "trimming preallocated space");
        } else {
            tracing::warn!(segment = %seg.path.display(), at = end, bytes = cut, "cutting a torn or corrupt tail");
        }
        seg.truncate_log(end).await?;
    }
    seg.set_end(end, next, max_ts).await?;
    Ok(Recovered {
        batches_walked: walked,
        bytes_cut: cut,
    })
}

fn last_entry<F: StorageFile>(seg: &Segment<F>) -> (u64, Offset) {
    let st = seg.st.borrow();
    st.index.last().map_or((0, seg.base), |(rel, pos)| {
        (u64::from(pos), seg.base.plus(i64::from(rel)))
    })
}

/// The last index entry that points at a whole batch with its offset and a good CRC.
async fn checked_entry<F: StorageFile>(seg: &Segment<F>, size: u64) -> Result<(u64, Offset)> {
    loop {
        let (pos, offset) = last_entry(seg);
        // Position 0 holds the segment's first batch, at its base offset (and with no entries
        // left, the walk starts there): an entry there naming another offset lies.
        let ok = if pos == 0 {
            if offset == seg.base {
                return Ok((0, seg.base));
            }
            false
        } else if pos + batch::HEADER_BYTES as u64 <= size {
            let head = read(seg, seg.log_file(), pos, batch::HEADER_BYTES, size).await?;
            match batch::peek(&head) {
                Ok((h, len)) if h.base_offset.get() == offset.0 && pos + len as u64 <= size => {
                    let whole = read(seg, seg.log_file(), pos, len, size).await?;
                    batch::validate(&whole, usize::MAX).is_ok()
                }
                _ => false,
            }
        } else {
            false
        };
        if ok {
            return Ok((pos, offset));
        }
        // A crash loses index pages but never makes an entry lie (pages are written after the
        // sync that covers them), so an entry that does not check out is corruption.
        let entry = seg.st.borrow().index.len() - 1;
        tracing::warn!(
            index = %seg.path.with_extension("index").display(),
            at = entry * 8,
            offset = offset.0,
            position = pos,
            "corrupt index entry: no whole batch with that offset at that position; dropped, the log is walked instead"
        );
        seg.st.borrow_mut().index.pop();
    }
}
