//! Segment files and their manifest, for projections that fold the log into tables.
//!
//! A projection writes each changed partition as a new, fsynced file, then commits one
//! [`Manifest`] — the checkpoint (the next log position to fold) and the file of every
//! partition — as a single fsynced RocksDB key. A crash before the commit leaves the old
//! manifest and its files intact; files no manifest names are removed at the next open.
//! The store never looks inside a segment: it is domain-agnostic.

use crate::{EventStore, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

const MANIFEST_VERSION: u32 = 1;

/// What a projection has made durable: its checkpoint and the file holding each partition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version of the manifest itself.
    pub version: u32,
    /// The projection's own format version: a manifest of another version is ignored
    /// (the projection rebuilds by replay).
    pub format: u32,
    /// The next log position to fold: every event before it is in the segments.
    pub checkpoint: u64,
    /// Partition name (e.g. `dossiers/2019-03`) → file name in the segment directory.
    pub segments: BTreeMap<String, String>,
}

/// A directory of segment files whose manifest lives in the log's metadata.
#[derive(Clone)]
pub struct SegmentDir {
    dir: PathBuf,
    store: EventStore,
    key: Vec<u8>,
}

impl SegmentDir {
    /// Opens (creating) `dir` for the projection `name`.
    pub fn open(store: &EventStore, dir: impl AsRef<Path>, name: &str) -> Result<Self> {
        fs::create_dir_all(dir.as_ref())?;
        // Absolute: readers (DataFusion's object store among them) resolve from `/`.
        let dir = fs::canonicalize(dir.as_ref())?;
        Ok(Self {
            dir,
            store: store.clone(),
            key: format!("chiso/projection/{name}/manifest").into_bytes(),
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The committed manifest, if any and of a format in `formats` (those the caller reads);
    /// removes files it does not name.
    pub fn load(&self, formats: RangeInclusive<u32>) -> Result<Option<Manifest>> {
        let stored = self
            .store
            .settings(&self.key)?
            .into_iter()
            .find(|(key, _)| *key == self.key);
        let manifest = stored
            .and_then(|(_, value)| serde_json::from_slice::<Manifest>(&value).ok())
            .filter(|m| m.version == MANIFEST_VERSION && formats.contains(&m.format));
        self.remove_files(manifest.as_ref(), &BTreeSet::new())?;
        Ok(manifest)
    }

    /// Writes a new segment file durably (temporary file, fsync, rename, fsync of the
    /// directory). It counts only once a committed manifest names it.
    pub fn write(&self, file_name: &str, bytes: &[u8]) -> Result<()> {
        self.write_file(file_name, bytes)?;
        self.sync_dir()
    }

    /// Writes new segment files durably, as [`SegmentDir::write`] does each, with one
    /// fsync of the directory for all of them.
    pub fn write_all<'a>(
        &self,
        files: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    ) -> Result<()> {
        for (file_name, bytes) in files {
            self.write_file(file_name, bytes)?;
        }
        self.sync_dir()
    }

    fn write_file(&self, file_name: &str, bytes: &[u8]) -> Result<()> {
        let temporary = self.dir.join(format!("{file_name}.tmp"));
        let mut file = fs::File::create(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temporary, self.dir.join(file_name))?;
        Ok(())
    }

    fn sync_dir(&self) -> Result<()> {
        fs::File::open(&self.dir)?.sync_all()?;
        Ok(())
    }

    /// Copies the files `manifest` names into the directory `dest` (created), durably: each
    /// file, then `dest` and the directory holding it are fsynced. The bytes copied.
    pub fn copy_to(&self, manifest: &Manifest, dest: &Path) -> Result<u64> {
        fs::create_dir_all(dest)?;
        let mut bytes = 0;
        for file in manifest.segments.values() {
            bytes += fs::copy(self.dir.join(file), dest.join(file))?;
            fs::File::open(dest.join(file))?.sync_all()?;
        }
        fs::File::open(dest)?.sync_all()?;
        if let Some(parent) = dest.parent() {
            fs::File::open(parent)?.sync_all()?;
        }
        Ok(bytes)
    }

    /// Reads a segment file.
    pub fn read(&self, file_name: &str) -> Result<Vec<u8>> {
        Ok(fs::read(self.dir.join(file_name))?)
    }

    /// Commits `manifest` (fsynced, atomic), then removes the files it no longer names.
    pub fn commit(&self, manifest: &Manifest) -> Result<()> {
        self.commit_keeping(manifest, &BTreeSet::new()).map(drop)
    }

    /// Like [`SegmentDir::commit`], but keeps the files in `keep` too (files a reader still
    /// holds; they go at a later commit, or at the next open). Answers the names of the files
    /// it removed (so caches of their contents can forget them).
    pub fn commit_keeping(
        &self,
        manifest: &Manifest,
        keep: &BTreeSet<String>,
    ) -> Result<Vec<String>> {
        let mut manifest = manifest.clone();
        manifest.version = MANIFEST_VERSION;
        let bytes = serde_json::to_vec(&manifest).expect("a manifest serializes");
        self.store.put_setting(&self.key, &bytes)?;
        self.remove_files(Some(&manifest), keep)
    }

    /// The projection format of the committed manifest, whatever it is (to tell an upgrade
    /// from a first start).
    pub fn stored_format(&self) -> Result<Option<u32>> {
        let stored = self
            .store
            .settings(&self.key)?
            .into_iter()
            .find(|(key, _)| *key == self.key);
        Ok(stored
            .and_then(|(_, value)| serde_json::from_slice::<Manifest>(&value).ok())
            .map(|m| m.format))
    }

    /// Forgets the manifest and every segment file (a rebuild starts from nothing).
    pub fn clear(&self) -> Result<()> {
        self.store.delete_setting(&self.key)?;
        self.remove_files(None, &BTreeSet::new()).map(drop)
    }

    fn remove_files(
        &self,
        manifest: Option<&Manifest>,
        keep: &BTreeSet<String>,
    ) -> Result<Vec<String>> {
        let named: BTreeSet<&String> = manifest
            .map(|m| m.segments.values().collect())
            .unwrap_or_default();
        let mut removed = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let kept = named.contains(&name) || keep.contains(&name);
            if !kept && entry.file_type()?.is_file() {
                fs::remove_file(entry.path())?;
                removed.push(name);
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_names_the_files_that_survive() {
        let dir = tempfile::tempdir().unwrap();
        let store = EventStore::open(dir.path().join("log")).unwrap();
        let segments = SegmentDir::open(&store, dir.path().join("tables"), "t").unwrap();
        assert_eq!(segments.load(1..=1).unwrap(), None);
        segments.write("a.1", b"one").unwrap();
        segments.write("b.1", b"two").unwrap();
        let mut manifest = Manifest {
            format: 1,
            checkpoint: 7,
            ..Manifest::default()
        };
        manifest.segments.insert("a".into(), "a.1".into());
        segments.commit(&manifest).unwrap();
        assert!(
            !segments.path().join("b.1").exists(),
            "uncommitted file removed"
        );
        let loaded = segments.load(1..=1).unwrap().unwrap();
        assert_eq!(loaded.checkpoint, 7);
        assert_eq!(segments.read("a.1").unwrap(), b"one");
        assert_eq!(segments.load(0..=2).unwrap().unwrap().checkpoint, 7);
        assert_eq!(
            segments.load(2..=3).unwrap(),
            None,
            "another format is ignored"
        );
        segments.clear().unwrap();
        assert_eq!(segments.load(1..=1).unwrap(), None);
    }

    #[test]
    fn a_relative_directory_is_kept_absolute() {
        let dir = tempfile::tempdir().unwrap();
        let store = EventStore::open(dir.path().join("log")).unwrap();
        let here = std::env::current_dir().unwrap();
        let relative = pathdiff(&dir.path().join("tables"), &here);
        let segments = SegmentDir::open(&store, &relative, "t").unwrap();
        assert!(
            segments.path().is_absolute(),
            "{}",
            segments.path().display()
        );
        assert_eq!(
            segments.path(),
            fs::canonicalize(dir.path().join("tables")).unwrap()
        );
    }

    /// `target` relative to `base` (both absolute).
    fn pathdiff(target: &Path, base: &Path) -> PathBuf {
        let ups = base.components().count() - 1;
        let mut relative: PathBuf = std::iter::repeat_n("..", ups).collect();
        relative.extend(target.components().skip(1));
        relative
    }
}
