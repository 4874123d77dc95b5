//! Typed errors of `orl-data`.
//!
//! Every variant that concerns a file carries its path, and every variant that
//! concerns a column or an HDF5/npz key names it, so a user can tell *where* a
//! dataset is wrong and *what* was expected without reading our source.

use std::path::PathBuf;

/// Result alias used throughout `orl-data`.
pub type Result<T, E = DataError> = std::result::Result<T, E>;

/// Everything that can go wrong while reading, converting, writing or sampling a dataset.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// The operating system refused a read, write or rename (the cause is the error's source).
    #[error("cannot access {path}")]
    Io {
        /// File or directory involved.
        path: PathBuf,
        /// Underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A required key (HDF5 dataset, npz array, JSON field) or column is absent.
    #[error("{path}: missing {what} `{key}`")]
    MissingKey {
        /// File involved.
        path: PathBuf,
        /// "HDF5 dataset", "npz array", "column", ...
        what: &'static str,
        /// The key that was looked for.
        key: String,
    },
    /// Two arrays that must describe the same transitions disagree in length or shape.
    #[error("{path}: `{key}` has {found} but {expected} was expected")]
    Shape {
        /// File involved.
        path: PathBuf,
        /// The key or column with the unexpected shape.
        key: String,
        /// What the other arrays imply.
        expected: String,
        /// What the file holds.
        found: String,
    },
    /// A key or column has a type that cannot be read losslessly as the expected one.
    #[error("{path}: `{key}` has dtype {found}, expected {expected}")]
    Dtype {
        /// File involved.
        path: PathBuf,
        /// The key or column.
        key: String,
        /// Accepted type(s).
        expected: String,
        /// Type found in the file.
        found: String,
    },
    /// NaN or infinity in a numeric column (allowed only with `allow_nonfinite`).
    #[error(
        "{path}: `{key}` holds {count} non-finite value(s) (NaN/inf), first at row {first_row}; \
         pass --allow-nonfinite to keep them"
    )]
    NonFinite {
        /// File involved.
        path: PathBuf,
        /// The key or column.
        key: String,
        /// How many values are NaN or infinite.
        count: usize,
        /// Row (transition index) of the first one.
        first_row: usize,
    },
    /// The input holds no transitions.
    #[error("{path}: the dataset is empty ({detail})")]
    Empty {
        /// File involved.
        path: PathBuf,
        /// What was found instead.
        detail: String,
    },
    /// The file could not be parsed: truncated, corrupt, or not what its name says.
    #[error("{path}: cannot read {format} file: {detail}")]
    Corrupt {
        /// File involved.
        path: PathBuf,
        /// The format we tried to read.
        format: &'static str,
        /// What the decoder reported.
        detail: String,
    },
    /// The input's format could not be recognised or is not supported in that direction.
    #[error("{path}: {detail}")]
    UnknownFormat {
        /// File involved.
        path: PathBuf,
        /// Which formats were tried and what was expected.
        detail: String,
    },
    /// The data is readable but violates an invariant of the orl dataset format.
    #[error("{path}: {detail}")]
    Invalid {
        /// File involved (or `<memory>` for datasets built in memory).
        path: PathBuf,
        /// What is wrong, naming the column.
        detail: String,
    },
    /// Sampling or replay configuration error.
    #[error("replay: {0}")]
    Replay(String),
}

impl DataError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn missing(
        path: impl Into<PathBuf>,
        what: &'static str,
        key: impl Into<String>,
    ) -> Self {
        Self::MissingKey {
            path: path.into(),
            what,
            key: key.into(),
        }
    }

    pub(crate) fn corrupt(
        path: impl Into<PathBuf>,
        format: &'static str,
        detail: impl std::fmt::Display,
    ) -> Self {
        Self::Corrupt {
            path: path.into(),
            format,
            detail: detail.to_string(),
        }
    }

    pub(crate) fn invalid(path: impl Into<PathBuf>, detail: impl Into<String>) -> Self {
        Self::Invalid {
            path: path.into(),
            detail: detail.into(),
        }
    }

    pub(crate) fn dtype(
        path: impl Into<PathBuf>,
        key: impl Into<String>,
        expected: impl Into<String>,
        found: impl std::fmt::Display,
    ) -> Self {
        Self::Dtype {
            path: path.into(),
            key: key.into(),
            expected: expected.into(),
            found: found.to_string(),
        }
    }

    pub(crate) fn shape(
        path: impl Into<PathBuf>,
        key: impl Into<String>,
        expected: impl Into<String>,
        found: impl Into<String>,
    ) -> Self {
        Self::Shape {
            path: path.into(),
            key: key.into(),
            expected: expected.into(),
            found: found.into(),
        }
    }
}
