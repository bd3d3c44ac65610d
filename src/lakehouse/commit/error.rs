//! The commit layer's typed error: callers match on its kind (retry a stale rewrite, redo an
//! ingest flush after a producer conflict, look up an unknown outcome) instead of inspecting
//! messages or downcasting.

use iceberg::TableIdent;

/// A boxed underlying error (keeps its own chain for `{:#}`).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a commit did not happen (or may not have).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The same producer (another run of the model, seed or ingest source) committed to the
    /// table since this change's base: the change was computed from a state that is gone and
    /// is never re-applied.
    #[error("{0}")]
    ProducerConflict(String),
    /// The change no longer applies to the table (a file it replaces is gone): not retried
    /// here; the caller may plan again on the new table state.
    #[error("{0}")]
    Stale(String),
    /// The catalog update failed in a way that leaves its outcome unknown: the new metadata
    /// may be live, so its files are kept.
    #[error("{0}")]
    UnknownOutcome(String),
    /// A concurrent commit changed the table's schema under a schema change.
    #[error("commit to {0} conflicted with a concurrent schema change; nothing was committed, run again")]
    SchemaConflict(TableIdent),
    /// Every attempt lost the compare-and-swap to another writer.
    #[error("{what} lost {attempts} races with concurrent writers; nothing was committed")]
    TooManyConflicts { what: String, attempts: u32 },
    /// The catalog could not be reached, read or updated.
    #[error("{what}")]
    Catalog {
        what: String,
        #[source]
        source: BoxError,
    },
    /// Writing or reading manifests, manifest lists or metadata files (storage), or building
    /// the new metadata, failed.
    #[error(transparent)]
    Storage(#[from] iceberg::Error),
    /// The request cannot apply to this table (unknown snapshot, not format v2, ...).
    #[error("{0}")]
    Invalid(String),
    /// The catalog cannot take this kind of commit (yet).
    #[error("{0}")]
    Unsupported(String),
    /// A certain failure: nothing was committed and the commit's files were removed.
    #[error("{what} failed; nothing was committed")]
    Failed {
        what: String,
        #[source]
        source: Box<Error>,
    },
    /// Any other error (e.g. from a caller's rebase hook).
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl Error {
    /// The error itself, or the cause a [`Error::Failed`] wraps: match on this.
    pub fn kind(&self) -> &Error {
        match self {
            Error::Failed { source, .. } => source.kind(),
            other => other,
        }
    }

    /// Another run of the same producer committed meanwhile.
    pub fn is_producer_conflict(&self) -> bool {
        matches!(self.kind(), Error::ProducerConflict(_))
    }

    /// A file the change replaces is gone.
    pub fn is_stale(&self) -> bool {
        matches!(self.kind(), Error::Stale(_))
    }

    /// The commit may or may not have landed.
    pub fn is_unknown_outcome(&self) -> bool {
        matches!(self.kind(), Error::UnknownOutcome(_))
    }

    pub(crate) fn catalog(what: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Catalog {
            what: what.into(),
            source: source.into(),
        }
    }
}
