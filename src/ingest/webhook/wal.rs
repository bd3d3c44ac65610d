//! The write-ahead log of a webhook source: NDJSON envelopes in `wal-<time>.ndjson` files, one
//! file per server start, under `.lake/ingest/<source>/`.
//!
//! Invariant: a line is either absent or complete and synced before its event is acknowledged.
//! [`Wal::append`] writes the whole line and fsyncs it, and only then marks the event's keys
//! seen; a failed write or sync (a full disk) truncates the file back to its previous length,
//! so the log is left as it was and a retry of the event is stored, not answered "duplicate".
//! A crash mid-write can still leave an incomplete last line: [`recover`] cuts it (and repairs
//! a line an older version corrupted) before the log is read, with a warning. The serving
//! process holds an exclusive lock on its file, so recovery never touches a live log.

use std::collections::HashSet;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::signature::{content_digest, dedupes_content};

/// One event as the write-ahead log holds it.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Envelope {
    pub id: String,
    pub provider: String,
    pub event_type: Option<String>,
    pub received_at: i64,
    pub body: String,
    /// Digest of the signed content (providers deduplicated by content; see `signature`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

impl Envelope {
    /// The keys the event is deduplicated by: its provider's id and, for providers deduplicated
    /// by content, its content digest (computed from the body for entries written without one).
    pub fn keys(&self) -> Vec<String> {
        let mut keys = vec![format!("{}:{}", self.provider, self.id)];
        if dedupes_content(&self.provider) {
            let digest = self.digest.clone().unwrap_or_else(|| content_digest(&self.provider, None, self.body.as_bytes()));
            keys.push(format!("{}#{digest}", self.provider));
        }
        keys
    }
}

/// Whether `name` is a write-ahead log file's name.
pub(super) fn is_log(path: &Path) -> bool {
    path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("wal-") && n.ends_with(".ndjson"))
}

/// Whether a running server holds the log at `path` (its lock).
pub(super) fn is_live(path: &Path) -> bool {
    File::open(path).is_ok_and(|f| matches!(f.try_lock_shared(), Err(std::fs::TryLockError::WouldBlock)))
}

/// What appending an event did.
#[derive(Debug, PartialEq)]
pub(super) enum Stored {
    New,
    /// One of its keys is in the log already: acknowledged, not stored again.
    Duplicate,
}

/// The log file this process appends to.
pub(super) struct Wal {
    file: File,
    path: PathBuf,
    /// Length of the file's complete, synced lines.
    len: u64,
    /// A failed write could not be truncated away yet: do so before the next append.
    dirty: bool,
    /// Keys of the events in every log of the source.
    seen: HashSet<String>,
}

impl Wal {
    /// Creates a new log file in `dir` (locked while this process lives), knowing `seen`.
    pub fn create(dir: &Path, seen: HashSet<String>) -> Result<Self> {
        let name = format!("wal-{}.ndjson", chrono::Utc::now().format("%Y%m%dT%H%M%S%.6f"));
        let path = dir.join(name);
        let file = std::fs::OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("cannot create the write-ahead log {}", path.display()))?;
        file.try_lock().map_err(|e| anyhow::anyhow!("cannot lock {}: {e}", path.display()))?;
        // The new name must survive a crash too.
        File::open(dir).and_then(|d| d.sync_all()).with_context(|| format!("cannot sync {}", dir.display()))?;
        Ok(Self { file, path, len: 0, dirty: false, seen })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends the event and syncs it, then marks its keys seen; `Duplicate` when a key was
    /// seen before. On an error the file is as it was before the call.
    pub fn append(&mut self, envelope: &Envelope) -> Result<Stored> {
        let keys = envelope.keys();
        if keys.iter().any(|k| self.seen.contains(k)) {
            return Ok(Stored::Duplicate);
        }
        let mut line = serde_json::to_vec(envelope)?;
        line.push(b'\n');
        if self.dirty {
            self.file
                .set_len(self.len)
                .with_context(|| format!("cannot cut an incomplete write from {}", self.path.display()))?;
            self.dirty = false;
        }
        if let Err(e) = self.file.write_all(&line).and_then(|()| self.file.sync_data()) {
            // Leave no partial line behind (O_APPEND: the next write lands at the cut).
            self.dirty = self.file.set_len(self.len).is_err();
            return Err(anyhow::Error::new(e).context(format!("cannot write the event to {}", self.path.display())));
        }
        self.len += line.len() as u64;
        self.seen.extend(keys);
        Ok(Stored::New)
    }
}

/// Makes every log file in `dir` readable (see [`repair`]) and returns the keys of the events
/// they hold. A file locked by a live server is read, not changed.
pub(super) fn recover(dir: &Path) -> Result<HashSet<String>> {
    let mut seen = HashSet::new();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    paths.retain(|p| is_log(p));
    paths.sort();
    for path in paths {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let live = matches!(file.try_lock(), Err(std::fs::TryLockError::WouldBlock));
        // (A live log may end in a line being written: only its complete lines are read.)
        let text = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        if !live {
            repair(&file, &path, &text)?;
        }
        let text = if live { text } else { std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))? };
        for line in text.split_inclusive(|b| *b == b'\n').filter(|l| l.ends_with(b"\n")) {
            if let Ok(e) = serde_json::from_slice::<Envelope>(line) {
                seen.extend(e.keys());
            }
        }
    }
    Ok(seen)
}

/// Cuts an incomplete last line (a write interrupted by a crash) and, in place so that line
/// numbers stay, repairs complete lines that are no log entry: an entry glued to the remains
/// of an earlier failed write (logs of older versions) keeps the entry, anything else is
/// blanked. Each change is logged as a warning.
fn repair(file: &File, path: &Path, text: &[u8]) -> Result<()> {
    let shown = path.display();
    let mut offset = 0u64;
    let mut changed = false;
    for (number, line) in text.split_inclusive(|b| *b == b'\n').enumerate() {
        let at = offset;
        offset += line.len() as u64;
        if !line.ends_with(b"\n") {
            tracing::warn!("{shown}: cut an incomplete last line ({} bytes) left by an interrupted write", line.len());
            file.set_len(at).with_context(|| format!("cannot cut the incomplete last line of {shown}"))?;
            changed = true;
            break;
        }
        let content = &line[..line.len() - 1];
        if content.iter().all(u8::is_ascii_whitespace) || serde_json::from_slice::<Envelope>(content).is_ok() {
            continue;
        }
        // An entry always starts with `{"id":` (inside a body string, quotes are escaped).
        let start = content.windows(6).rposition(|w| w == b"{\"id\":");
        let keep = start.filter(|s| serde_json::from_slice::<Envelope>(&content[*s..]).is_ok());
        let blank = keep.unwrap_or(content.len());
        match keep {
            Some(_) => tracing::warn!("{shown} line {}: removed {blank} bytes of an interrupted write before an entry", number + 1),
            None => tracing::warn!("{shown} line {}: blanked {blank} bytes that are no log entry", number + 1),
        }
        file.write_all_at(&vec![b' '; blank], at).with_context(|| format!("cannot repair {shown}"))?;
        changed = true;
    }
    if changed {
        file.sync_all().with_context(|| format!("cannot sync {shown}"))?;
    }
    Ok(())
}
