//! What the `orl` command and the Python package (`orl-py`) share above the training layer:
//! the run folder ([`run_dir`]), training into one with resume and a divergence guard
//! ([`train`]), and the dataset figure ([`plot`]).
//!
//! Why a crate of its own: `orl-algos` does no file I/O beyond checkpoints, and a run folder
//! is more than a checkpoint (its recipe record, metric rows, status); the binaries use
//! `anyhow`, which a library must not. Both front ends map their arguments onto a
//! [`TrainJob`] and watch the run through an [`Observer`] (a progress bar, a Python callback),
//! so the folder's layout, the resume check and the stop semantics exist once.
//!
//! ```no_run
//! use orl_algos::{AlgoKind, RecipeRequest, Schedule};
//! use orl_app::{Silent, TrainJob, train};
//!
//! let ds = orl_data::Dataset::open("datasets/pendulum-v1-medium.parquet")?;
//! let job = TrainJob {
//!     algo: AlgoKind::BC,
//!     request: RecipeRequest::new(1_000, 0),
//!     schedule: Schedule { checkpoint_every: Some(500), ..Schedule::quiet(1_000) },
//!     out: "runs/bc".into(),
//!     resume: false,
//! };
//! let summary = train(&job, ds, &mut Silent)?;
//! println!("{} updates into {}", summary.steps, summary.run.display());
//! # Ok::<(), orl_app::AppError>(())
//! ```

mod error;
pub mod plot;
pub mod run_dir;
mod train;

pub use error::AppError;
pub use run_dir::RunDir;
pub use train::{Observer, Silent, Stop, TrainJob, TrainSummary, recipe_of, train};
