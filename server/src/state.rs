//! Broker state that must survive restarts besides the engine's data: the cluster id and the
//! producer id counter, in `<data-dir>/broker.toml`.
//!
//! Producer ids are handed out in blocks: before the first id of a block is given, the end of
//! the block is written (temp file, fsync, rename, fsync the directory). After a crash the
//! broker starts at the end of the last block written, so an id is never given twice; at most
//! one block of ids goes unused per restart.

use std::{
    fs::File,
    io::Write,
    path::{Path, PathBuf},
    sync::Mutex,
};

use serde::{Deserialize, Serialize};

/// Producer ids reserved per write of the state file.
pub const PRODUCER_ID_BLOCK: i64 = 1000;

const FILE_NAME: &str = "broker.toml";
const LOCK_NAME: &str = "keel.lock";

/// Why the broker state could not be loaded or saved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// Reading or writing the file failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file does not parse.
    #[error("{path} is corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The parser's complaint.
        reason: String,
    },
    /// Another process holds the data dir.
    #[error("{path} is locked: another keel uses this data dir")]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// Every producer id was given out.
    #[error("producer ids exhausted")]
    Exhausted,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct OnDisk {
    cluster_id: String,
    /// The first producer id not yet reserved.
    next_producer_id: i64,
}

#[derive(Debug)]
struct Ids {
    next: i64,
    reserved_end: i64,
}

/// The broker's persistent state.
#[derive(Debug)]
pub struct BrokerState {
    /// Held (flock) while the broker runs, so that two brokers never share a data dir.
    _lock: File,
    path: PathBuf,
    cluster_id: String,
    ids: Mutex<Ids>,
}

impl BrokerState {
    /// Loads the state from the data dir, creating it (and the dir) on first start.
    ///
    /// # Errors
    /// An unreadable, unwritable or corrupt state file.
    pub fn open(data_dir: &Path) -> Result<BrokerState, StateError> {
        let io = |op, path: &Path| {
            let path = path.to_path_buf();
            move |source| StateError::Io { op, path, source }
        };
        std::fs::create_dir_all(data_dir).map_err(io("mkdir", data_dir))?;
        let lock = lock(&data_dir.join(LOCK_NAME))?;
        let path = data_dir.join(FILE_NAME);
        let disk = match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str::<OnDisk>(&text).map_err(|e| StateError::Corrupt {
                path: path.clone(),
                reason: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => OnDisk {
                cluster_id: new_cluster_id(),
                next_producer_id: 0,
            },
            Err(e) => return Err(io("read", &path)(e)),
        };
        let state = BrokerState {
            _lock: lock,
            path,
            cluster_id: disk.cluster_id,
            ids: Mutex::new(Ids {
                next: disk.next_producer_id,
                reserved_end: disk.next_producer_id,
            }),
        };
        // Write at once: the cluster id of a new data dir is fixed from its first start.
        state.save(disk.next_producer_id)?;
        Ok(state)
    }

    /// The cluster id (22 characters of URL-safe base64, as Kafka's).
    #[must_use]
    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// A producer id never given before, by this data dir.
    ///
    /// # Errors
    /// The state file could not be written (the id is then not given).
    pub fn next_producer_id(&self) -> Result<i64, StateError> {
        let mut ids = self
            .ids
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if ids.next >= ids.reserved_end {
            let end = ids
                .next
                .checked_add(PRODUCER_ID_BLOCK)
                .ok_or(StateError::Exhausted)?;
            // A blocking write on a shard thread, once per block of ids: rare enough.
            self.save(end)?;
            ids.reserved_end = end;
        }
        let id = ids.next;
        ids.next += 1;
        debug_assert!(ids.next <= ids.reserved_end);
        Ok(id)
    }

    fn save(&self, next_producer_id: i64) -> Result<(), StateError> {
        let disk = OnDisk {
            cluster_id: self.cluster_id.clone(),
            next_producer_id,
        };
        let text = toml::to_string(&disk).map_err(|e| StateError::Corrupt {
            path: self.path.clone(),
            reason: e.to_string(),
        })?;
        let tmp = self.path.with_extension("toml.tmp");
        let io = |op| {
            let path = tmp.clone();
            move |source| StateError::Io { op, path, source }
        };
        let mut f = File::create(&tmp).map_err(io("create"))?;
        f.write_all(text.as_bytes()).map_err(io("write"))?;
        f.sync_all().map_err(io("fsync"))?;
        std::fs::rename(&tmp, &self.path).map_err(io("rename"))?;
        if let Some(dir) = self.path.parent() {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io("fsync dir"))?;
        }
        Ok(())
    }
}

/// Opens and exclusively locks the lock file; the lock lasts as long as the file is open.
fn lock(path: &Path) -> Result<File, StateError> {
    use std::os::fd::AsRawFd;
    let file = File::create(path).map_err(|source| StateError::Io {
        op: "create",
        path: path.to_path_buf(),
        source,
    })?;
    // SAFETY: flock on a file descriptor this function owns; no memory is involved.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        if err.kind() == std::io::ErrorKind::WouldBlock {
            return Err(StateError::Locked {
                path: path.to_path_buf(),
            });
        }
        return Err(StateError::Io {
            op: "flock",
            path: path.to_path_buf(),
            source: err,
        });
    }
    Ok(file)
}

/// A random cluster id: a UUID in unpadded URL-safe base64, 22 characters.
fn new_cluster_id() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = uuid::Uuid::new_v4().into_bytes();
    let mut bits: u32 = 0;
    let mut nbits = 0;
    let mut out = String::with_capacity(22);
    for b in bytes {
        bits = (bits << 8) | u32::from(b);
        nbits += 8;
        while nbits >= 6 {
            nbits -= 6;
            out.push(char::from(ALPHABET[((bits >> nbits) & 63) as usize]));
        }
    }
    if nbits > 0 {
        out.push(char::from(ALPHABET[((bits << (6 - nbits)) & 63) as usize]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_survive_restart_and_never_repeat() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let s = BrokerState::open(dir.path())?;
        let cluster = s.cluster_id().to_string();
        assert_eq!(cluster.len(), 22);
        let a = s.next_producer_id()?;
        let b = s.next_producer_id()?;
        assert_eq!(b, a + 1);
        drop(s);
        let s = BrokerState::open(dir.path())?;
        assert_eq!(s.cluster_id(), cluster);
        let c = s.next_producer_id()?;
        assert!(c > b, "{c} after restart must be past {b}");
        assert!(
            matches!(
                BrokerState::open(dir.path()),
                Err(StateError::Locked { .. })
            ),
            "a second broker on the same data dir is refused"
        );
        Ok(())
    }
}
