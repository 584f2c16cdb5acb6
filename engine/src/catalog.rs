//! The catalog: topics, their partitions, each partition's owner shard and per-topic settings.
//! Shared by all shards; read through cheap snapshots (`Arc`), changed rarely (admin requests)
//! under a lock, and persisted crash-safely as JSON: write `catalog.json.tmp`, fsync, rename
//! over `catalog.json`, fsync the directory. A crash at any point leaves the old or the new
//! catalog, never a mix; a leftover temp file is ignored and removed at start.
//!
//! A full disk must not stop the catalog from changing: deleting a topic is how space is
//! freed. So the catalog dir keeps `reserve`, a file of `RESERVE_BYTES` zeros written at start;
//! a catalog write that finds the disk full deletes it and tries again, and the next change
//! that finds room writes it back.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, RwLock},
};

use serde::{Deserialize, Serialize};

use crate::{
    config::TopicOverrides,
    error::{EngineError, Result},
    storage::write_atomic_std,
};

/// One partition's entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionMeta {
    /// Partition index.
    pub index: i32,
    /// The shard that owns it.
    pub owner_shard: u32,
    /// A broker-unique id (cache keys).
    pub uid: u64,
}

/// One topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMeta {
    /// Topic name.
    pub name: String,
    /// Topic id (a UUID, as Kafka's).
    pub id: [u8; 16],
    /// Partitions, by index.
    pub partitions: Vec<PartitionMeta>,
    /// Settings this topic overrides.
    pub overrides: TopicOverrides,
}

/// The catalog's content.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CatalogState {
    /// Format version (1).
    pub version: u32,
    /// Topics by name.
    pub topics: BTreeMap<String, Arc<TopicMeta>>,
    /// The next partition uid to give out.
    pub next_uid: u64,
}

impl CatalogState {
    /// A topic partition's owner shard.
    #[must_use]
    pub fn owner(&self, topic: &str, partition: i32) -> Option<&PartitionMeta> {
        let t = self.topics.get(topic)?;
        usize::try_from(partition)
            .ok()
            .and_then(|i| t.partitions.get(i))
    }

    /// Partitions per shard, for placing new ones on the least loaded.
    #[must_use]
    pub fn load_per_shard(&self, shards: usize) -> Vec<usize> {
        let mut load = vec![0; shards];
        for t in self.topics.values() {
            for p in &t.partitions {
                if let Some(l) = load.get_mut(p.owner_shard as usize) {
                    *l += 1;
                }
            }
        }
        load
    }

    /// Partitions in all topics.
    #[must_use]
    pub fn partition_count(&self) -> usize {
        self.topics.values().map(|t| t.partitions.len()).sum()
    }
}

/// The shared, persisted catalog.
#[derive(Debug)]
pub struct Catalog {
    path: PathBuf,
    state: RwLock<Arc<CatalogState>>,
    write: Mutex<()>,
}

const FILE: &str = "catalog.json";
const RESERVE: &str = "reserve";
/// Space held back for catalog writes on a full disk: a catalog of tens of thousands of
/// partitions, written twice (the temp file and the file it replaces).
const RESERVE_BYTES: usize = 4 << 20;

/// Writes the reserve file if it is missing; best effort (a full disk just goes without).
fn ensure_reserve(dir: &Path) {
    let path = dir.join(RESERVE);
    if path.exists() {
        return;
    }
    let result = write_atomic_std(&path, &vec![0; RESERVE_BYTES]);
    if let Err(e) = result {
        tracing::warn!(path = %path.display(), error = %e, "no room for the catalog's reserve");
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_file(path.with_extension("tmp"));
    }
}

/// Writes the catalog; on a full disk, gives up the reserve and tries once more.
fn write_catalog(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    match write_atomic_std(path, bytes) {
        Err(e) if e.raw_os_error() == Some(28) && dir.join(RESERVE).exists() => {
            tracing::warn!(path = %path.display(), "disk full: catalog written with its reserve");
            let _ = std::fs::remove_file(path.with_extension("tmp"));
            std::fs::remove_file(dir.join(RESERVE))?;
            write_atomic_std(path, bytes)
        }
        Ok(()) => {
            ensure_reserve(dir);
            Ok(())
        }
        other => other,
    }
}

impl Catalog {
    /// Loads the catalog under `data_dir/catalog/`, or starts an empty one.
    ///
    /// # Errors
    /// I/O errors, or a catalog file that does not parse.
    pub fn load(data_dir: &Path) -> Result<Self> {
        let dir = data_dir.join("catalog");
        std::fs::create_dir_all(&dir).map_err(|e| EngineError::io("mkdir", &dir, e))?;
        let path = dir.join(FILE);
        let tmp = path.with_extension("tmp");
        if tmp.exists() {
            std::fs::remove_file(&tmp).map_err(|e| EngineError::io("remove", &tmp, e))?;
        }
        let state = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| EngineError::Corrupt {
                path: path.clone(),
                pos: e.column() as u64,
                reason: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => CatalogState {
                version: 1,
                ..CatalogState::default()
            },
            Err(e) => return Err(EngineError::io("read", &path, e)),
        };
        if state.version != 1 {
            return Err(EngineError::Corrupt {
                path,
                pos: 0,
                reason: format!(
                    "catalog version {} is not supported (this build reads 1)",
                    state.version
                ),
            });
        }
        ensure_reserve(&dir);
        Ok(Catalog {
            path,
            state: RwLock::new(Arc::new(state)),
            write: Mutex::new(()),
        })
    }

    /// The current catalog.
    #[must_use]
    pub fn snapshot(&self) -> Arc<CatalogState> {
        match self.state.read() {
            Ok(s) => Arc::clone(&s),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Changes the catalog: `f` edits a copy; if it succeeds the copy is persisted and becomes
    /// current. Changes are serialized.
    ///
    /// # Errors
    /// `f`'s error, or the I/O error persisting it (then nothing changed).
    pub fn update<R>(&self, f: impl FnOnce(&mut CatalogState) -> Result<R>) -> Result<R> {
        let _guard = self
            .write
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut next = (*self.snapshot()).clone();
        let r = f(&mut next)?;
        let bytes = serde_json::to_vec_pretty(&next)
            .map_err(|e| EngineError::io("encode", &self.path, std::io::Error::other(e)))?;
        write_catalog(&self.path, &bytes).map_err(|e| EngineError::io("write", &self.path, e))?;
        let mut s = self
            .state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *s = Arc::new(next);
        Ok(r)
    }
}

/// Checks a topic name as Kafka does: 1 to 249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
///
/// # Errors
/// `InvalidTopic` with the reason.
pub fn validate_topic_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        Some("empty")
    } else if name == "." || name == ".." {
        Some("'.' and '..' are not allowed")
    } else if name.len() > 249 {
        Some("longer than 249 characters")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        Some("only ASCII letters, digits, '.', '_' and '-' are allowed")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(EngineError::InvalidTopic {
            name: name.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names() {
        assert!(validate_topic_name("orders.v1_x-y").is_ok());
        for bad in ["", ".", "..", "a b", "ä", &"x".repeat(250)] {
            assert!(validate_topic_name(bad).is_err(), "{bad:?}");
        }
    }
}
