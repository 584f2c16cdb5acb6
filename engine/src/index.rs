//! Sparse offset and time indexes of one segment.
//!
//! Both live in memory while the segment is open and are written to disk in whole 4 KiB
//! pages. A page is written only after the log fdatasync that covers every entry in it, so any
//! entry found on disk points at durable, checked data: recovery may trust the last entry it
//! finds (after checking the batch there) and scan only the log after it. A crash can lose
//! index pages, never make one lie; a torn or zero-padded page ends at the first entry that is
//! not strictly increasing. See engine/FORMAT.md.
//!
//! ```text
//! .index      entry = relative_offset u32 LE | position u32 LE            (8 bytes, 512/page)
//! .timeindex  entry = max_timestamp i64 LE | relative_offset u32 LE | 0u32 (16 bytes, 256/page)
//! ```

use zerocopy::{
    byteorder::little_endian::{I64, U32},
    FromBytes, Immutable, IntoBytes, KnownLayout,
};

use crate::storage::BLOCK_BYTES;

/// One offset index entry.
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct OffsetEntry {
    /// Offset of a batch's first record, relative to the segment's base offset.
    pub relative_offset: U32,
    /// Byte position of that batch in the segment.
    pub position: U32,
}

/// One time index entry.
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct TimeEntry {
    /// The largest timestamp in the segment up to and including the batch below.
    pub max_timestamp: I64,
    /// Relative offset of the batch that first reached that timestamp.
    pub relative_offset: U32,
    /// Zero; reserved for a future version.
    pub reserved: U32,
}

/// Offset entries in one page.
pub const OFFSET_ENTRIES_PER_PAGE: usize =
    BLOCK_BYTES as usize / std::mem::size_of::<OffsetEntry>();
/// Time entries in one page.
pub const TIME_ENTRIES_PER_PAGE: usize = BLOCK_BYTES as usize / std::mem::size_of::<TimeEntry>();
const _: () = assert!(OFFSET_ENTRIES_PER_PAGE * 8 == BLOCK_BYTES as usize);
const _: () = assert!(TIME_ENTRIES_PER_PAGE * 16 == BLOCK_BYTES as usize);

/// The offset index of one segment, in memory.
#[derive(Debug, Default, Clone)]
pub struct OffsetIndex {
    entries: Vec<(u32, u32)>,
}

impl OffsetIndex {
    /// Parses index file bytes, stopping at the first entry that does not increase.
    #[must_use]
    pub fn from_bytes(bytes: &[u8]) -> Self {
        let mut entries: Vec<(u32, u32)> = Vec::new();
        for chunk in bytes.chunks_exact(8) {
            let Ok(e) = OffsetEntry::read_from_bytes(chunk) else {
                break;
            };
            let (rel, pos) = (e.relative_offset.get(), e.position.get());
            if let Some(&(last_rel, last_pos)) = entries.last() {
                if rel <= last_rel || pos <= last_pos {
                    break;
                }
            }
            entries.push((rel, pos));
        }
        OffsetIndex { entries }
    }

    /// Adds an entry; offsets and positions must increase.
    pub fn push(&mut self, relative_offset: u32, position: u32) {
        if let Some(&(rel, pos)) = self.entries.last() {
            assert!(
                relative_offset > rel && position > pos,
                "index entries must increase"
            );
        }
        self.entries.push((relative_offset, position));
    }

    /// The position of the last indexed batch starting at or before `relative_offset`.
    #[must_use]
    pub fn lookup(&self, relative_offset: u32) -> Option<(u32, u32)> {
        let i = self
            .entries
            .partition_point(|&(rel, _)| rel <= relative_offset);
        i.checked_sub(1).map(|i| self.entries[i])
    }

    /// Entries held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The last entry.
    #[must_use]
    pub fn last(&self) -> Option<(u32, u32)> {
        self.entries.last().copied()
    }

    /// Drops entries at positions at or past `position` (the log was cut there).
    pub fn truncate_to_position(&mut self, position: u32) {
        self.entries.retain(|&(_, pos)| pos < position);
    }

    /// Drops the last entry.
    pub fn pop(&mut self) {
        self.entries.pop();
    }

    /// Entries `[from, to)` encoded for disk.
    #[must_use]
    pub fn encode(&self, from: usize, to: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity((to - from) * 8);
        for &(rel, pos) in &self.entries[from..to] {
            let e = OffsetEntry {
                relative_offset: rel.into(),
                position: pos.into(),
            };
            out.extend_from_slice(e.as_bytes());
        }
        out
    }

    /// How many entries point below `position` (a durable prefix of the entries).
    #[must_use]
    pub fn count_below(&self, position: u64) -> usize {
        self.entries
            .partition_point(|&(_, pos)| u64::from(pos) < position)
    }
}

/// The time index of one segment, in memory.
#[derive(Debug, Default, Clone)]
pub struct TimeIndex {
    entries: Vec<(i64, u32)>,
}

impl TimeIndex {
    /// Parses time index file bytes, stopping at the first entry that does not increase.
    #[must_use]
    pub fn from_bytes(bytes: &[u8]) -> Self {
        let mut entries: Vec<(i64, u32)> = Vec::new();
        for chunk in bytes.chunks_exact(16) {
            let Ok(e) = TimeEntry::read_from_bytes(chunk) else {
                break;
            };
            let (ts, rel) = (e.max_timestamp.get(), e.relative_offset.get());
            if let Some(&(last_ts, last_rel)) = entries.last() {
                if ts <= last_ts || rel <= last_rel {
                    break;
                }
            } else if chunk.iter().all(|b| *b == 0) {
                break;
            }
            entries.push((ts, rel));
        }
        TimeIndex { entries }
    }

    /// Records that the batch at `relative_offset` raised the max timestamp to `max_timestamp`.
    pub fn push(&mut self, max_timestamp: i64, relative_offset: u32) {
        match self.entries.last() {
            Some(&(ts, rel)) if max_timestamp <= ts || relative_offset <= rel => {}
            _ => self.entries.push((max_timestamp, relative_offset)),
        }
    }

    /// The relative offset of the last entry whose timestamp is below `timestamp`: scanning
    /// from that batch finds the first batch at or past `timestamp`.
    #[must_use]
    pub fn lookup(&self, timestamp: i64) -> Option<u32> {
        self.lookup_entry(timestamp).map(|(_, rel)| rel)
    }

    /// The whole entry [`TimeIndex::lookup`] finds: (max timestamp, relative offset). The
    /// batch at that offset is the one that raised the segment's max timestamp to it, so a
    /// reader can check the entry against the batch.
    #[must_use]
    pub fn lookup_entry(&self, timestamp: i64) -> Option<(i64, u32)> {
        let i = self.entries.partition_point(|&(ts, _)| ts < timestamp);
        i.checked_sub(1).map(|i| self.entries[i])
    }

    /// Entries held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The newest entry's timestamp.
    #[must_use]
    pub fn last_timestamp(&self) -> Option<i64> {
        self.entries.last().map(|&(ts, _)| ts)
    }

    /// Drops entries at relative offsets at or past `relative_offset`.
    pub fn truncate_to_offset(&mut self, relative_offset: u32) {
        self.entries.retain(|&(_, rel)| rel < relative_offset);
    }

    /// Entries `[from, to)` encoded for disk.
    #[must_use]
    pub fn encode(&self, from: usize, to: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity((to - from) * 16);
        for &(ts, rel) in &self.entries[from..to] {
            let e = TimeEntry {
                max_timestamp: ts.into(),
                relative_offset: rel.into(),
                reserved: 0.into(),
            };
            out.extend_from_slice(e.as_bytes());
        }
        out
    }

    /// How many entries are for batches below `relative_offset`.
    #[must_use]
    pub fn count_below(&self, relative_offset: u32) -> usize {
        self.entries
            .partition_point(|&(_, rel)| rel < relative_offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_index_round_trip_and_lookup() {
        let mut idx = OffsetIndex::default();
        idx.push(0, 0);
        idx.push(10, 4096);
        idx.push(25, 9000);
        let back = OffsetIndex::from_bytes(&idx.encode(0, 3));
        assert_eq!(back.len(), 3);
        assert_eq!(back.lookup(0), Some((0, 0)));
        assert_eq!(back.lookup(9), Some((0, 0)));
        assert_eq!(back.lookup(10), Some((10, 4096)));
        assert_eq!(back.lookup(1000), Some((25, 9000)));
    }

    #[test]
    fn zero_padding_ends_the_index() {
        let mut idx = OffsetIndex::default();
        idx.push(0, 0);
        idx.push(5, 100);
        let mut bytes = idx.encode(0, 2);
        bytes.resize(4096, 0);
        assert_eq!(OffsetIndex::from_bytes(&bytes).len(), 2);
    }

    #[test]
    fn time_index_lookup() {
        let mut t = TimeIndex::default();
        t.push(100, 0);
        t.push(100, 3); // not an increase: ignored
        t.push(200, 5);
        t.push(300, 9);
        assert_eq!(t.len(), 3);
        assert_eq!(t.lookup(50), None);
        assert_eq!(t.lookup(150), Some(0));
        assert_eq!(t.lookup(300), Some(5));
        let mut bytes = t.encode(0, 3);
        bytes.resize(4096, 0);
        assert_eq!(TimeIndex::from_bytes(&bytes).len(), 3);
    }
}
