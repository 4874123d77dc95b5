//! `orl._orl.Dataset`: a validated `orl_data::Dataset` held by Python.
//!
//! Arrays cross the boundary as `(dtype, shape, bytes)` triples, NumPy's own `dtype.str`
//! (`<f4`, `|b1`, ...), C order: the Python half (`orl/__init__.py`) turns NumPy arrays into
//! them and back, and this side decodes them with the `.npz` reader's decoder
//! (`orl_data::convert::npz`), so an array handed over from NumPy is validated by the same
//! code, with the same messages, as one read from an `.npz` file. Tables cross as Arrow
//! (the C data interface, `arrow-pyarrow`), in the Parquet file's own columns.

use std::path::{Path, PathBuf};

use arrow_pyarrow::{PyArrowType, Table};
use orl_data::convert::npz::{NpyArray, NpyRef, decode_npy_data, from_arrays};
use orl_data::convert::{ConvertOptions, Format, OutputFormat};
use orl_data::{Actions, OpenOptions, Report};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::errors;

/// The label of in-memory sources in error messages.
const NUMPY: &str = "<numpy arrays>";
const ARROW: &str = "<arrow table>";

/// An offline-RL dataset: transitions grouped in episodes, validated on construction.
#[pyclass(module = "orl._orl", name = "Dataset", frozen)]
pub struct PyDataset {
    pub(crate) inner: orl_data::Dataset,
}

/// The input format and reader options of `Dataset.open` / `convert`.
fn read_options(
    format: &str,
    allow_nonfinite: bool,
    env_id: Option<String>,
    ref_scores: Option<(f64, f64)>,
) -> PyResult<(Format, ConvertOptions)> {
    let format = format
        .parse::<Format>()
        .map_err(|e| errors::value(format!("format: {e}")))?;
    Ok((
        format,
        ConvertOptions {
            allow_nonfinite,
            env_id,
            ref_min_score: ref_scores.map(|r| r.0),
            ref_max_score: ref_scores.map(|r| r.1),
        },
    ))
}

fn set_overrides(
    ds: &mut orl_data::Dataset,
    env_id: Option<String>,
    ref_scores: Option<(f64, f64)>,
) {
    let m = ds.meta_mut();
    if env_id.is_some() {
        m.env_id = env_id;
    }
    if let Some((lo, hi)) = ref_scores {
        m.ref_min_score = Some(lo);
        m.ref_max_score = Some(hi);
    }
}

/// An array for the Python side: NumPy's `dtype.str`, the shape, the C-order bytes.
pub(crate) type Wire<'py> = (&'static str, Vec<usize>, Bound<'py, PyBytes>);

#[pymethods]
impl PyDataset {
    /// Builds a dataset from arrays under D4RL's keys: a list of `(key, dtype, shape, bytes)`.
    #[staticmethod]
    #[pyo3(signature = (arrays, env_id=None, ref_scores=None, allow_nonfinite=false))]
    fn _from_arrays(
        py: Python<'_>,
        arrays: Vec<(String, String, Vec<usize>, Bound<'_, PyBytes>)>,
        env_id: Option<String>,
        ref_scores: Option<(f64, f64)>,
        allow_nonfinite: bool,
    ) -> PyResult<Self> {
        let source = Path::new(NUMPY);
        let mut decoded = Vec::with_capacity(arrays.len());
        for (key, descr, shape, bytes) in &arrays {
            let data = decode_npy_data(source, key, descr, shape, bytes.as_bytes())
                .map_err(errors::data)?;
            decoded.push((
                key.clone(),
                NpyArray {
                    descr: descr.clone(),
                    shape: shape.clone(),
                    data,
                },
            ));
        }
        let ds = py.detach(move || {
            let mut ds = from_arrays(source, decoded)?;
            if !allow_nonfinite {
                ds.check_finite(source)?;
            }
            ds.meta_mut().provenance.source_format = Some("numpy".into());
            Ok::<_, orl_data::DataError>(ds)
        });
        let mut ds = ds.map_err(errors::data)?;
        set_overrides(&mut ds, env_id, ref_scores);
        Ok(Self { inner: ds })
    }

    /// Opens an orl Parquet file or folder, or any format `orl convert` reads (D4RL or
    /// d3rlpy HDF5, Minari, `.npz`), detected from the file unless `format` says.
    #[staticmethod]
    #[pyo3(signature = (path, format="auto", allow_nonfinite=false, env_id=None, ref_scores=None))]
    fn open(
        py: Python<'_>,
        path: PathBuf,
        format: &str,
        allow_nonfinite: bool,
        env_id: Option<String>,
        ref_scores: Option<(f64, f64)>,
    ) -> PyResult<Self> {
        let (format, opts) = read_options(format, allow_nonfinite, env_id, ref_scores)?;
        let ds = py
            .detach(|| orl_data::convert::read(&path, format, &opts))
            .map_err(errors::data)?;
        Ok(Self { inner: ds })
    }

    /// A dataset from a `pyarrow.Table` (or any Arrow stream) in the orl file's columns.
    #[staticmethod]
    #[pyo3(signature = (table, allow_nonfinite=false))]
    fn from_arrow(table: PyArrowType<Table>, allow_nonfinite: bool) -> PyResult<Self> {
        let (batches, schema) = table.0.into_inner();
        let ds = orl_data::from_record_batches(
            Path::new(ARROW),
            &schema,
            &batches,
            &OpenOptions { allow_nonfinite },
        )
        .map_err(errors::data)?;
        Ok(Self { inner: ds })
    }

    /// The dataset as a `pyarrow.Table` in the orl file's columns, the metadata on its schema.
    fn to_arrow(&self) -> PyResult<PyArrowType<Table>> {
        let batch = orl_data::to_record_batch(&self.inner).map_err(errors::data)?;
        let schema = batch.schema();
        let table = Table::try_new(vec![batch], schema)
            .map_err(|e| errors::value(format!("building the Arrow table: {e}")))?;
        Ok(PyArrowType(table))
    }

    /// Writes the dataset: `.parquet` (orl's format), `.hdf5`/`.h5` (D4RL layout) or `.npz`,
    /// atomically (a failed write leaves no file).
    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        let format = OutputFormat::from_extension(&path).ok_or_else(|| {
            errors::value(format!(
                "{}: cannot tell the output format from the extension; use .parquet, .hdf5, .h5 or .npz",
                path.display()
            ))
        })?;
        py.detach(|| orl_data::convert::write(&self.inner, &path, format))
            .map_err(errors::data)
    }

    /// The `orl inspect --json` document: `{"metadata": ..., "report": ...}`, as JSON text.
    fn _inspect_json(&self) -> PyResult<String> {
        let doc = serde_json::json!({
            "metadata": self.inner.meta(),
            "report": Report::new(&self.inner),
        });
        serde_json::to_string(&doc).map_err(|e| errors::value(format!("serialising: {e}")))
    }

    /// Draws the `orl inspect --plot` figure (return and action histograms) to a .png or .svg.
    fn plot(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        let report = Report::new(&self.inner);
        py.detach(|| orl_app::plot::draw(&report, &path))
            .map_err(errors::app)
    }

    /// One column as `(dtype, shape, bytes)`: `observations`, `next_observations`, `actions`,
    /// `rewards`, `terminals`, `timeouts`, `next_valid`, `behavior_log_prob`, `episode_ids`,
    /// `steps`. `None` for an optional column the dataset lacks.
    fn _column<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Option<Wire<'py>>> {
        let ds = &self.inner;
        let n = ds.len();
        let od = ds.obs_dim();
        let c = ds.columns();
        let rows = || ds.row_index();
        let one = |shape: Vec<usize>, v: NpyRef<'_>| {
            let (descr, bytes) = v.encode();
            (descr, shape, bytes)
        };
        let out: Option<(&'static str, Vec<usize>, Vec<u8>)> = match name {
            "observations" => Some(one(vec![n, od], NpyRef::F32(&c.observations))),
            "next_observations" => Some(one(vec![n, od], NpyRef::F32(&c.next_observations))),
            "actions" => Some(match &c.actions {
                Actions::Continuous { dim, values } => one(vec![n, *dim], NpyRef::F32(values)),
                Actions::Discrete(v) => one(vec![n], NpyRef::Int(v)),
            }),
            "rewards" => Some(one(vec![n], NpyRef::F32(&c.rewards))),
            "terminals" => Some(one(vec![n], NpyRef::Bool(&c.terminals))),
            "timeouts" => Some(one(vec![n], NpyRef::Bool(&c.timeouts))),
            "next_valid" => Some(match c.next_valid.as_deref() {
                Some(v) => one(vec![n], NpyRef::Bool(v)),
                None => one(vec![n], NpyRef::Bool(&vec![true; n])),
            }),
            "behavior_log_prob" => c
                .behavior_log_prob
                .as_deref()
                .map(|v| one(vec![n], NpyRef::F64(v))),
            "episode_ids" => Some(one(vec![n], NpyRef::Int(&rows().0))),
            "steps" => Some(one(vec![n], NpyRef::Int(&rows().1))),
            other => {
                return Err(errors::value(format!(
                    "no column `{other}`; the columns are observations, next_observations, actions, rewards, terminals, timeouts, next_valid, behavior_log_prob, episode_ids, steps"
                )));
            }
        };
        Ok(out.map(|(d, s, b)| (d, s, PyBytes::new(py, &b))))
    }

    /// Number of transitions.
    fn __len__(&self) -> usize {
        self.inner.len()
    }

    /// Observation width.
    #[getter]
    fn obs_dim(&self) -> usize {
        self.inner.obs_dim()
    }

    /// Action width (1 for discrete actions).
    #[getter]
    fn act_dim(&self) -> usize {
        self.inner.act_dim()
    }

    /// Number of episodes.
    #[getter]
    fn num_episodes(&self) -> usize {
        self.inner.num_episodes()
    }

    /// True for discrete actions.
    #[getter]
    fn is_discrete(&self) -> bool {
        self.inner.meta().action_space.is_discrete()
    }

    /// The environment id recorded in the metadata.
    #[getter]
    fn env_id(&self) -> Option<String> {
        self.inner.meta().env_id.clone()
    }

    /// The metadata as JSON text.
    fn _meta_json(&self) -> PyResult<String> {
        serde_json::to_string(self.inner.meta())
            .map_err(|e| errors::value(format!("serialising: {e}")))
    }

    fn __repr__(&self) -> String {
        let m = self.inner.meta();
        format!(
            "Dataset({} transitions, {} episodes, obs_dim {}, {}, env {})",
            self.inner.len(),
            self.inner.num_episodes(),
            self.inner.obs_dim(),
            match &m.action_space {
                orl_data::ActionSpace::Continuous { dim, .. } =>
                    format!("continuous actions dim {dim}"),
                orl_data::ActionSpace::Discrete { n } => format!("{n} discrete actions"),
            },
            m.env_id.as_deref().unwrap_or("unknown"),
        )
    }
}

/// `orl convert`: reads `src` (any supported format) and writes `dst` (by its extension, or
/// `format` for the non-Parquet side), with the CLI's rules (`orl_data::convert::plan`).
#[pyfunction]
#[pyo3(signature = (src, dst, format="auto", allow_nonfinite=false, env_id=None, ref_scores=None))]
pub fn convert(
    py: Python<'_>,
    src: PathBuf,
    dst: PathBuf,
    format: &str,
    allow_nonfinite: bool,
    env_id: Option<String>,
    ref_scores: Option<(f64, f64)>,
) -> PyResult<PyDataset> {
    let (format, opts) = read_options(format, allow_nonfinite, env_id, ref_scores)?;
    let ds = py
        .detach(|| orl_data::convert::convert(&src, &dst, format, &opts))
        .map_err(errors::data)?;
    Ok(PyDataset { inner: ds })
}
