//! Typed errors of `orl-app`: each names the file or setting it concerns.

use std::path::PathBuf;

use orl_algos::AlgoError;
use orl_data::DataError;

/// Everything that can go wrong while training into, resuming or reading a run folder.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppError {
    /// The data layer's error (reading the dataset, a wrong column, NaN in the data, ...).
    #[error(transparent)]
    Data(#[from] DataError),
    /// The training layer's error (a setting, a checkpoint, an environment, ...).
    #[error(transparent)]
    Algo(#[from] AlgoError),
    /// The operating system refused a read, write or rename.
    #[error("cannot access {path}: {source}")]
    Io {
        /// File or folder involved.
        path: PathBuf,
        /// Underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A JSON file of the run folder does not hold what it should.
    #[error("{path}: {detail}")]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A new run was asked for in a folder that already holds one.
    #[error("{path} already holds a run; resume it or choose another output folder")]
    RunExists {
        /// The run folder.
        path: PathBuf,
    },
    /// A resume was asked for but the folder holds no checkpoint.
    #[error("resume: {path} has no checkpoint")]
    NoCheckpoint {
        /// The checkpoint file looked for.
        path: PathBuf,
    },
    /// A resume was asked for with settings that give another recipe than the stored one.
    #[error("resume: the settings give another recipe than the run in {path}: {difference}")]
    RecipeMismatch {
        /// The run folder.
        path: PathBuf,
        /// The first differing field and both values.
        difference: String,
    },
    /// An update diverged (NaN/inf loss); the last good checkpoint is kept.
    #[error("{cause}. The last good checkpoint ({checkpoint}) is kept.")]
    Diverged {
        /// The training layer's divergence error, as text.
        cause: String,
        /// The checkpoint that survives.
        checkpoint: PathBuf,
    },
    /// The caller stopped the run (Ctrl-C, a callback); the last checkpoint is kept.
    #[error(
        "stopped at update {step}: {reason}. The last checkpoint ({checkpoint}, update {checkpoint_step}) is kept; resume from it"
    )]
    Interrupted {
        /// Updates done when it stopped.
        step: usize,
        /// The update the kept checkpoint holds.
        checkpoint_step: usize,
        /// The checkpoint file.
        checkpoint: PathBuf,
        /// Why the caller stopped it.
        reason: String,
    },
    /// The dataset figure could not be drawn.
    #[error("{path}: {detail}")]
    Plot {
        /// The figure file.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
}

impl AppError {
    pub(crate) fn plot(path: &std::path::Path, detail: impl Into<String>) -> Self {
        Self::Plot {
            path: path.to_path_buf(),
            detail: detail.into(),
        }
    }
    pub(crate) fn bad_file(path: &std::path::Path, detail: impl Into<String>) -> Self {
        Self::BadFile {
            path: path.to_path_buf(),
            detail: detail.into(),
        }
    }
}
