//! Reading and writing the orl Parquet format (`docs/dataset-format.md`).
//!
//! [`write_parquet`] writes one zstd-compressed file atomically; [`Dataset::open`] loads a
//! file or a directory of files into memory; [`DatasetReader`] streams row groups as
//! [`Chunk`]s for data larger than memory.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, FixedSizeListArray, Float32Array, Float64Array,
    Int64Array, RecordBatch,
};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{DataType, Field, Float32Type, Float64Type, Int64Type, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use crate::dataset::{Actions, Columns, Dataset};
use crate::error::{DataError, Result};
use crate::fsutil::atomic_write;
use crate::meta::{ActionSpace, DatasetMeta, FORMAT_VERSION, META_KEY, VERSION_KEY};

/// Column names of the format, in file order.
pub mod col {
    /// Int64, episode identifier; rows of one episode are contiguous.
    pub const EPISODE_ID: &str = "episode_id";
    /// Int64, 0-based step within the episode.
    pub const STEP: &str = "step";
    /// FixedSizeList<Float32>[obs_dim].
    pub const OBSERVATION: &str = "observation";
    /// FixedSizeList<Float32>[act_dim] (continuous) or Int64 (discrete).
    pub const ACTION: &str = "action";
    /// Float32.
    pub const REWARD: &str = "reward";
    /// Boolean.
    pub const TERMINAL: &str = "terminal";
    /// Boolean.
    pub const TIMEOUT: &str = "timeout";
    /// FixedSizeList<Float32>[obs_dim], null where unknown.
    pub const NEXT_OBSERVATION: &str = "next_observation";
    /// Float64, optional.
    pub const BEHAVIOR_LOG_PROB: &str = "behavior_log_prob";
}

/// Options of [`write_parquet`]; defaults documented on each field.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// Rows per row group. Default 65 536: about 10 MB of HalfCheetah-shaped rows, the middle of
    /// the 1–128 MB range the Parquet docs recommend, and small enough to stream.
    pub row_group_size: usize,
    /// zstd level. Default 3, zstd's own default: float data barely compresses further at higher
    /// levels and level 3 keeps writes fast.
    pub zstd_level: i32,
}

impl Default for WriteOptions {
    fn default() -> Self {
        Self {
            row_group_size: 65_536,
            zstd_level: 3,
        }
    }
}

fn list_field(nullable: bool, dim: usize) -> DataType {
    let _ = nullable;
    DataType::FixedSizeList(
        Arc::new(Field::new("item", DataType::Float32, false)),
        dim as i32,
    )
}

/// The Arrow schema of a dataset with these spaces.
pub fn arrow_schema(meta: &DatasetMeta, with_log_prob: bool) -> SchemaRef {
    let od = meta.observation_space.dim;
    let action = match &meta.action_space {
        ActionSpace::Continuous { dim, .. } => list_field(false, *dim),
        ActionSpace::Discrete { .. } => DataType::Int64,
    };
    let mut fields = vec![
        Field::new(col::EPISODE_ID, DataType::Int64, false),
        Field::new(col::STEP, DataType::Int64, false),
        Field::new(col::OBSERVATION, list_field(false, od), false),
        Field::new(col::ACTION, action, false),
        Field::new(col::REWARD, DataType::Float32, false),
        Field::new(col::TERMINAL, DataType::Boolean, false),
        Field::new(col::TIMEOUT, DataType::Boolean, false),
        Field::new(col::NEXT_OBSERVATION, list_field(true, od), true),
    ];
    if with_log_prob {
        fields.push(Field::new(col::BEHAVIOR_LOG_PROB, DataType::Float64, false));
    }
    Arc::new(Schema::new(fields))
}

fn f32_list(values: &[f32], dim: usize, nulls: Option<NullBuffer>) -> Result<ArrayRef> {
    let child = Arc::new(Float32Array::from(values.to_vec()));
    let field = Arc::new(Field::new("item", DataType::Float32, false));
    FixedSizeListArray::try_new(field, dim as i32, child, nulls)
        .map(|a| Arc::new(a) as ArrayRef)
        .map_err(|e| {
            DataError::invalid("<memory>", format!("building a FixedSizeList column: {e}"))
        })
}

/// Writes `ds` to `path` as one Parquet file, atomically (temporary file, then rename).
pub fn write_parquet(ds: &Dataset, path: &Path, opts: &WriteOptions) -> Result<()> {
    let meta = ds.meta();
    let schema = arrow_schema(meta, ds.behavior_log_prob().is_some());
    let mut meta_json = meta.clone();
    meta_json.format_version = FORMAT_VERSION.to_string();
    let json = serde_json::to_string(&meta_json)
        .map_err(|e| DataError::invalid(path, format!("serialising metadata: {e}")))?;
    let level = ZstdLevel::try_new(opts.zstd_level)
        .map_err(|e| DataError::invalid(path, format!("zstd level {}: {e}", opts.zstd_level)))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .set_max_row_group_row_count(Some(opts.row_group_size.max(1)))
        .set_key_value_metadata(Some(vec![
            KeyValue::new(VERSION_KEY.to_string(), FORMAT_VERSION.to_string()),
            KeyValue::new(META_KEY.to_string(), json),
        ]))
        .set_created_by(format!("orl-data {}", crate::meta::CONVERTER_VERSION))
        .build();
    let pq_err = |e: parquet::errors::ParquetError| DataError::corrupt(path, "parquet", e);

    let n = ds.len();
    let rows = RowIndex::of(ds);
    atomic_write(path, |w| {
        let mut writer = ArrowWriter::try_new(w, schema.clone(), Some(props)).map_err(pq_err)?;
        let chunk = opts.row_group_size.max(1);
        let mut start = 0;
        while start < n {
            let end = (start + chunk).min(n);
            let batch = record_batch(ds, &rows, start..end, &schema)
                .map_err(|e| DataError::invalid(path, format!("building a record batch: {e}")))?;
            writer.write(&batch).map_err(pq_err)?;
            writer.flush().map_err(pq_err)?;
            start = end;
        }
        writer.close().map_err(pq_err)?;
        Ok(())
    })
}

/// Per-row episode id and step, expanded from the episode table.
struct RowIndex {
    episode_id: Vec<i64>,
    step: Vec<i64>,
}

impl RowIndex {
    fn of(ds: &Dataset) -> Self {
        let (episode_id, step) = ds.row_index();
        Self { episode_id, step }
    }
}

/// Rows `r` of `ds` as one record batch of `schema` (the format's columns, in file order).
fn record_batch(
    ds: &Dataset,
    rows: &RowIndex,
    r: std::ops::Range<usize>,
    schema: &SchemaRef,
) -> std::result::Result<RecordBatch, String> {
    let od = ds.obs_dim();
    let c = ds.columns();
    let (start, end) = (r.start, r.end);
    let list = |v: &[f32], dim: usize, nulls| f32_list(v, dim, nulls).map_err(|e| e.to_string());
    let next_nulls = c
        .next_valid
        .as_ref()
        .map(|v| NullBuffer::from(v[r.clone()].to_vec()))
        .filter(|nb| nb.null_count() > 0);
    let mut arrays: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(rows.episode_id[r.clone()].to_vec())),
        Arc::new(Int64Array::from(rows.step[r.clone()].to_vec())),
        list(&c.observations[start * od..end * od], od, None)?,
        match &c.actions {
            Actions::Continuous { dim, values } => {
                list(&values[start * dim..end * dim], *dim, None)?
            }
            Actions::Discrete(v) => Arc::new(Int64Array::from(v[r.clone()].to_vec())),
        },
        Arc::new(Float32Array::from(c.rewards[r.clone()].to_vec())),
        Arc::new(BooleanArray::from(c.terminals[r.clone()].to_vec())),
        Arc::new(BooleanArray::from(c.timeouts[r.clone()].to_vec())),
        list(&c.next_observations[start * od..end * od], od, next_nulls)?,
    ];
    if let Some(lp) = &c.behavior_log_prob {
        arrays.push(Arc::new(Float64Array::from(lp[r].to_vec())));
    }
    RecordBatch::try_new(schema.clone(), arrays).map_err(|e| e.to_string())
}

/// Schema-level metadata keys of an in-memory Arrow table ([`to_record_batch`]): the same
/// keys and values as the Parquet file's key-value metadata.
fn meta_entries(meta: &DatasetMeta) -> Result<std::collections::HashMap<String, String>> {
    let mut m = meta.clone();
    m.format_version = FORMAT_VERSION.to_string();
    let json = serde_json::to_string(&m)
        .map_err(|e| DataError::invalid("<memory>", format!("serialising metadata: {e}")))?;
    Ok([
        (VERSION_KEY.to_string(), FORMAT_VERSION.to_string()),
        (META_KEY.to_string(), json),
    ]
    .into_iter()
    .collect())
}

/// The whole dataset as one Arrow record batch in the file format's columns
/// (`docs/dataset-format.md`), with the metadata (`orl.format_version`, `orl.meta`) on the
/// schema. This is what a Python caller receives as a `pyarrow` table.
pub fn to_record_batch(ds: &Dataset) -> Result<RecordBatch> {
    let schema = arrow_schema(ds.meta(), ds.behavior_log_prob().is_some());
    let schema = Arc::new(Schema::clone(&schema).with_metadata(meta_entries(ds.meta())?));
    record_batch(ds, &RowIndex::of(ds), 0..ds.len(), &schema)
        .map_err(|e| DataError::invalid("<memory>", format!("building a record batch: {e}")))
}

/// A dataset from Arrow record batches in the file format's columns, validated as a file is;
/// `source` names the table in errors. The spaces come from the schema's `orl.meta`
/// metadata when present (a table from [`to_record_batch`]), else from the columns (a table
/// built by hand: unbounded spaces, discrete `n` = largest action + 1, noted in the
/// provenance). Non-finite values are errors unless `opts.allow_nonfinite`.
pub fn from_record_batches(
    source: &Path,
    schema: &Schema,
    batches: &[RecordBatch],
    opts: &OpenOptions,
) -> Result<Dataset> {
    let meta = match schema.metadata().get(META_KEY) {
        Some(json) => serde_json::from_str::<DatasetMeta>(json).map_err(|e| {
            DataError::invalid(source, format!("metadata `{META_KEY}` is not valid: {e}"))
        })?,
        None => meta_from_columns(source, schema, batches)?,
    };
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let lay = check_schema(source, schema, &meta)?;
    assemble(
        source,
        meta,
        lay,
        rows,
        batches.iter().cloned().map(Ok),
        opts,
    )
}

/// Spaces read off the columns of a table without `orl.meta`.
fn meta_from_columns(
    source: &Path,
    schema: &Schema,
    batches: &[RecordBatch],
) -> Result<DatasetMeta> {
    let field = |name: &str| {
        schema
            .field_with_name(name)
            .map_err(|_| DataError::missing(source, "column", name))
    };
    let list_dim = |name: &str| -> Result<usize> {
        match field(name)?.data_type() {
            DataType::FixedSizeList(f, n) if *f.data_type() == DataType::Float32 => Ok(*n as usize),
            other => Err(DataError::dtype(
                source,
                name,
                "FixedSizeList<Float32>[dim]",
                other.to_string(),
            )),
        }
    };
    let obs_dim = list_dim(col::OBSERVATION)?;
    let mut note = None;
    let action_space = match field(col::ACTION)?.data_type() {
        DataType::Int64 => {
            let max = batches
                .iter()
                .filter_map(|b| b.column_by_name(col::ACTION))
                .filter_map(|a| {
                    a.as_primitive_opt::<Int64Type>()?
                        .values()
                        .iter()
                        .copied()
                        .max()
                })
                .max()
                .unwrap_or(0);
            let n = max.max(0) as usize + 1;
            note = Some(format!(
                "discrete action count inferred as {n} (largest action + 1); the table does not store it"
            ));
            ActionSpace::Discrete { n }
        }
        _ => ActionSpace::Continuous {
            dim: list_dim(col::ACTION)?,
            low: None,
            high: None,
        },
    };
    let mut meta = DatasetMeta::new(
        crate::meta::ObservationSpace {
            dim: obs_dim,
            low: None,
            high: None,
        },
        action_space,
    );
    meta.provenance.notes.extend(note);
    Ok(meta)
}

/// A run of rows from a streamed file: raw per-row `episode_id` and `step`, plus the columns.
///
/// An episode may continue into the next chunk; use `episode_id`/`step` to stitch.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    /// `[rows]` episode ids.
    pub episode_id: Vec<i64>,
    /// `[rows]` steps within episodes.
    pub step: Vec<i64>,
    /// The other columns, laid out as in [`Columns`].
    pub columns: Columns,
}

/// Streams an orl dataset (file or directory of files) one record batch at a time.
pub struct DatasetReader {
    meta: DatasetMeta,
    num_rows: usize,
    files: Vec<PathBuf>,
    current: Option<(PathBuf, ParquetRecordBatchReader, Layout)>,
    next_file: usize,
    batch_size: usize,
}

/// Column layout checked against the schema once per file.
#[derive(Debug, Clone, Copy)]
struct Layout {
    obs_dim: usize,
    act_dim: Option<usize>,
    log_prob: bool,
}

fn dataset_files(path: &Path) -> Result<Vec<PathBuf>> {
    if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| DataError::io(path, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(DataError::Empty {
                path: path.into(),
                detail: "directory holds no *.parquet files".into(),
            });
        }
        Ok(files)
    } else if path.exists() {
        Ok(vec![path.to_path_buf()])
    } else {
        Err(DataError::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or directory"),
        ))
    }
}

fn open_file(
    path: &Path,
    batch_size: usize,
) -> Result<(DatasetMeta, usize, ParquetRecordBatchReader, Layout)> {
    let f = File::open(path).map_err(|e| DataError::io(path, e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(f)
        .map_err(|e| DataError::corrupt(path, "parquet", e))?;
    let kv = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .cloned()
        .unwrap_or_default();
    let get = |k: &str| kv.iter().find(|e| e.key == k).and_then(|e| e.value.clone());
    let version = get(VERSION_KEY).ok_or_else(|| {
        DataError::invalid(
            path,
            format!("not an orl dataset: the Parquet key-value metadata has no `{VERSION_KEY}` (write it with `orl convert`)"),
        )
    })?;
    let major = |v: &str| v.split('.').next().unwrap_or("").to_string();
    if major(&version) != major(FORMAT_VERSION) {
        return Err(DataError::invalid(
            path,
            format!(
                "format version {version} is not readable by this orl (reads {FORMAT_VERSION} and its minor versions)"
            ),
        ));
    }
    let meta_json = get(META_KEY)
        .ok_or_else(|| DataError::missing(path, "Parquet key-value metadata", META_KEY))?;
    let meta: DatasetMeta = serde_json::from_str(&meta_json).map_err(|e| {
        DataError::invalid(path, format!("metadata `{META_KEY}` is not valid: {e}"))
    })?;
    let num_rows = usize::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0);
    let layout = check_schema(path, builder.schema(), &meta)?;
    let reader = builder
        .with_batch_size(batch_size)
        .build()
        .map_err(|e| DataError::corrupt(path, "parquet", e))?;
    Ok((meta, num_rows, reader, layout))
}

fn check_schema(path: &Path, schema: &Schema, meta: &DatasetMeta) -> Result<Layout> {
    let field = |name: &str| {
        schema
            .field_with_name(name)
            .map_err(|_| DataError::missing(path, "column", name))
    };
    let expect = |name: &str, ok: bool, expected: &str| -> Result<()> {
        if ok {
            Ok(())
        } else {
            Err(DataError::dtype(
                path,
                name,
                expected,
                schema
                    .field_with_name(name)
                    .map(|f| f.data_type().to_string())
                    .unwrap_or_default(),
            ))
        }
    };
    let list_dim = |dt: &DataType| match dt {
        DataType::FixedSizeList(f, n) if *f.data_type() == DataType::Float32 => Some(*n as usize),
        _ => None,
    };
    let od = meta.observation_space.dim;
    for name in [col::EPISODE_ID, col::STEP] {
        expect(name, *field(name)?.data_type() == DataType::Int64, "Int64")?;
    }
    for name in [col::OBSERVATION, col::NEXT_OBSERVATION] {
        expect(
            name,
            list_dim(field(name)?.data_type()) == Some(od),
            &format!("FixedSizeList<Float32>[{od}] (obs_dim in metadata)"),
        )?;
    }
    let act_dim = match &meta.action_space {
        ActionSpace::Continuous { dim, .. } => {
            expect(
                col::ACTION,
                list_dim(field(col::ACTION)?.data_type()) == Some(*dim),
                &format!("FixedSizeList<Float32>[{dim}] (continuous action space)"),
            )?;
            Some(*dim)
        }
        ActionSpace::Discrete { .. } => {
            expect(
                col::ACTION,
                *field(col::ACTION)?.data_type() == DataType::Int64,
                "Int64 (discrete action space)",
            )?;
            None
        }
    };
    expect(
        col::REWARD,
        *field(col::REWARD)?.data_type() == DataType::Float32,
        "Float32",
    )?;
    for name in [col::TERMINAL, col::TIMEOUT] {
        expect(
            name,
            *field(name)?.data_type() == DataType::Boolean,
            "Boolean",
        )?;
    }
    let log_prob = match schema.field_with_name(col::BEHAVIOR_LOG_PROB) {
        Ok(f) => {
            expect(
                col::BEHAVIOR_LOG_PROB,
                *f.data_type() == DataType::Float64,
                "Float64",
            )?;
            true
        }
        Err(_) => false,
    };
    Ok(Layout {
        obs_dim: od,
        act_dim,
        log_prob,
    })
}

fn no_nulls(path: &Path, name: &str, a: &dyn Array) -> Result<()> {
    if a.null_count() > 0 {
        return Err(DataError::invalid(
            path,
            format!(
                "column `{name}` holds {} null(s); only `next_observation` may be null",
                a.null_count()
            ),
        ));
    }
    Ok(())
}

fn column<'a>(path: &Path, b: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef> {
    b.column_by_name(name)
        .ok_or_else(|| DataError::missing(path, "column", name))
}

fn list_values<'a>(path: &Path, name: &str, a: &'a ArrayRef, dim: usize) -> Result<&'a [f32]> {
    let l = a
        .as_fixed_size_list_opt()
        .ok_or_else(|| DataError::dtype(path, name, "FixedSizeList<Float32>", a.data_type()))?;
    let v = l
        .values()
        .as_primitive_opt::<Float32Type>()
        .ok_or_else(|| DataError::dtype(path, name, "FixedSizeList<Float32>", a.data_type()))?;
    if let Some(child_nulls) = v.logical_nulls().filter(|n| n.null_count() > 0) {
        // Readers may mark the items under a null list slot null too; anywhere else they are an error.
        let parent = l.logical_nulls();
        let stray = (0..l.len() * dim).find(|&j| {
            child_nulls.is_null(l.offset() * dim + j)
                && !parent.as_ref().is_some_and(|p| p.is_null(j / dim))
        });
        if let Some(j) = stray {
            return Err(DataError::invalid(
                path,
                format!(
                    "column `{name}`: row {} holds a null item inside a non-null list",
                    j / dim
                ),
            ));
        }
    }
    let start = l.offset() * dim;
    let vals = v.values();
    vals.get(start..start + l.len() * dim).ok_or_else(|| {
        DataError::corrupt(
            path,
            "parquet",
            format!("column `{name}` is shorter than its row count"),
        )
    })
}

fn append_batch(
    path: &Path,
    b: &RecordBatch,
    lay: Layout,
    out: &mut Chunk,
    any_next_null: &mut bool,
) -> Result<()> {
    let ids = column(path, b, col::EPISODE_ID)?;
    no_nulls(path, col::EPISODE_ID, ids.as_ref())?;
    out.episode_id
        .extend_from_slice(ids.as_primitive::<Int64Type>().values());
    let step = column(path, b, col::STEP)?;
    no_nulls(path, col::STEP, step.as_ref())?;
    out.step
        .extend_from_slice(step.as_primitive::<Int64Type>().values());
    let obs = column(path, b, col::OBSERVATION)?;
    no_nulls(path, col::OBSERVATION, obs.as_ref())?;
    out.columns.observations.extend_from_slice(list_values(
        path,
        col::OBSERVATION,
        obs,
        lay.obs_dim,
    )?);
    let act = column(path, b, col::ACTION)?;
    no_nulls(path, col::ACTION, act.as_ref())?;
    match (&mut out.columns.actions, lay.act_dim) {
        (Actions::Continuous { values, .. }, Some(d)) => {
            values.extend_from_slice(list_values(path, col::ACTION, act, d)?)
        }
        (Actions::Discrete(v), None) => {
            v.extend_from_slice(act.as_primitive::<Int64Type>().values())
        }
        _ => unreachable!("layout fixed per dataset"),
    }
    let rew = column(path, b, col::REWARD)?;
    no_nulls(path, col::REWARD, rew.as_ref())?;
    out.columns
        .rewards
        .extend_from_slice(rew.as_primitive::<Float32Type>().values());
    for (name, dst) in [
        (col::TERMINAL, &mut out.columns.terminals),
        (col::TIMEOUT, &mut out.columns.timeouts),
    ] {
        let a = column(path, b, name)?;
        no_nulls(path, name, a.as_ref())?;
        dst.extend(a.as_boolean().values().iter());
    }
    let next = column(path, b, col::NEXT_OBSERVATION)?;
    let nv = list_values(path, col::NEXT_OBSERVATION, next, lay.obs_dim)?;
    let base = out.columns.next_observations.len();
    out.columns.next_observations.extend_from_slice(nv);
    let valid = out.columns.next_valid.get_or_insert_with(Vec::new);
    match next.logical_nulls() {
        Some(nulls) if nulls.null_count() > 0 => {
            *any_next_null = true;
            for (i, ok) in nulls.iter().enumerate() {
                valid.push(ok);
                if !ok {
                    out.columns.next_observations
                        [base + i * lay.obs_dim..base + (i + 1) * lay.obs_dim]
                        .fill(0.0);
                }
            }
        }
        _ => valid.extend(std::iter::repeat_n(true, next.len())),
    }
    if lay.log_prob {
        let a = column(path, b, col::BEHAVIOR_LOG_PROB)?;
        no_nulls(path, col::BEHAVIOR_LOG_PROB, a.as_ref())?;
        out.columns
            .behavior_log_prob
            .get_or_insert_with(Vec::new)
            .extend_from_slice(a.as_primitive::<Float64Type>().values());
    }
    Ok(())
}

fn empty_chunk(meta: &DatasetMeta, lay: Layout, rows: usize) -> Chunk {
    let od = meta.observation_space.dim;
    Chunk {
        episode_id: Vec::with_capacity(rows),
        step: Vec::with_capacity(rows),
        columns: Columns {
            observations: Vec::with_capacity(rows * od),
            next_observations: Vec::with_capacity(rows * od),
            next_valid: None,
            actions: match lay.act_dim {
                Some(dim) => Actions::Continuous {
                    dim,
                    values: Vec::with_capacity(rows * dim),
                },
                None => Actions::Discrete(Vec::with_capacity(rows)),
            },
            rewards: Vec::with_capacity(rows),
            terminals: Vec::with_capacity(rows),
            timeouts: Vec::with_capacity(rows),
            behavior_log_prob: lay.log_prob.then(|| Vec::with_capacity(rows)),
        },
    }
}

impl DatasetReader {
    /// Opens a file or a directory of `*.parquet` files (read in sorted name order).
    /// Reads only metadata until iterated.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::with_batch_size(path, 65_536)
    }

    /// Like [`DatasetReader::open`] with `batch_size` rows per yielded chunk (at most).
    pub fn with_batch_size(path: impl AsRef<Path>, batch_size: usize) -> Result<Self> {
        let path = path.as_ref();
        let files = dataset_files(path)?;
        let mut meta = None;
        let mut num_rows = 0;
        for f in &files {
            let (m, rows, _, _) = open_file(f, 1)?;
            num_rows += rows;
            match &meta {
                None => meta = Some(m),
                Some(m0) => same_spaces(f, m0, &m)?,
            }
        }
        let meta = meta.ok_or_else(|| DataError::Empty {
            path: path.into(),
            detail: "no files".into(),
        })?;
        Ok(Self {
            meta,
            num_rows,
            files,
            current: None,
            next_file: 0,
            batch_size: batch_size.max(1),
        })
    }

    /// Metadata of the first file (all files share spaces).
    pub fn meta(&self) -> &DatasetMeta {
        &self.meta
    }

    /// Total rows over all files, from the Parquet footers.
    pub fn num_rows(&self) -> usize {
        self.num_rows
    }

    fn next_chunk(&mut self) -> Result<Option<Chunk>> {
        loop {
            if self.current.is_none() {
                let Some(f) = self.files.get(self.next_file).cloned() else {
                    return Ok(None);
                };
                self.next_file += 1;
                let (_, _, reader, lay) = open_file(&f, self.batch_size)?;
                self.current = Some((f, reader, lay));
            }
            let Some((path, reader, lay)) = self.current.as_mut() else {
                continue;
            };
            match reader.next() {
                Some(Ok(batch)) => {
                    let mut chunk = empty_chunk(&self.meta, *lay, batch.num_rows());
                    let mut any_null = false;
                    append_batch(path, &batch, *lay, &mut chunk, &mut any_null)?;
                    if !any_null {
                        chunk.columns.next_valid = None;
                    }
                    return Ok(Some(chunk));
                }
                Some(Err(e)) => return Err(DataError::corrupt(path.clone(), "parquet", e)),
                None => self.current = None,
            }
        }
    }
}

impl Iterator for DatasetReader {
    type Item = Result<Chunk>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_chunk().transpose()
    }
}

fn same_spaces(path: &Path, a: &DatasetMeta, b: &DatasetMeta) -> Result<()> {
    if a.observation_space.dim != b.observation_space.dim || a.action_space != b.action_space {
        return Err(DataError::invalid(
            path,
            "this file's observation/action spaces differ from the first file of the directory",
        ));
    }
    Ok(())
}

/// Options of [`Dataset::open_with`].
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// Keep NaN/inf values instead of failing. Default false: non-finite data is an error.
    pub allow_nonfinite: bool,
}

impl Dataset {
    /// Loads an orl Parquet file, or a directory of them, into memory, rejecting non-finite values.
    pub fn open(path: impl AsRef<Path>) -> Result<Dataset> {
        Self::open_with(path, &OpenOptions::default())
    }

    /// Loads with options. Buffers are sized once from the footers' row counts, so memory is the
    /// raw column bytes plus 16 bytes per episode (the `episode_id`/`step` columns are folded
    /// into an episode table).
    pub fn open_with(path: impl AsRef<Path>, opts: &OpenOptions) -> Result<Dataset> {
        let path = path.as_ref();
        let files = dataset_files(path)?;
        let mut parts = Vec::with_capacity(files.len());
        for f in &files {
            parts.push(load_file(f, opts)?);
        }
        if parts.len() == 1 {
            return Ok(parts.pop().expect("one part"));
        }
        for (f, p) in files.iter().zip(&parts).skip(1) {
            same_spaces(f, parts[0].meta(), p.meta())?;
        }
        Dataset::concat(parts, false).map_err(|e| match e {
            DataError::Invalid { detail, .. } => DataError::invalid(path, detail),
            other => other,
        })
    }
}

fn load_file(path: &Path, opts: &OpenOptions) -> Result<Dataset> {
    let (meta, rows, reader, lay) = open_file(path, 65_536)?;
    let batches = reader.map(|b| b.map_err(|e| DataError::corrupt(path, "parquet", e)));
    assemble(path, meta, lay, rows, batches, opts)
}

/// A dataset from `rows` rows of record batches already checked against the schema (`lay`):
/// the columns appended, the episode table built from `episode_id`/`step`, every invariant
/// checked, NaN/inf refused unless `opts.allow_nonfinite`. A file and an Arrow table go
/// through here alike.
fn assemble(
    path: &Path,
    meta: DatasetMeta,
    lay: Layout,
    rows: usize,
    batches: impl Iterator<Item = Result<RecordBatch>>,
    opts: &OpenOptions,
) -> Result<Dataset> {
    if rows == 0 {
        return Err(DataError::Empty {
            path: path.into(),
            detail: "0 rows".into(),
        });
    }
    let mut acc = empty_chunk(&meta, lay, rows);
    let mut any_null = false;
    for batch in batches {
        append_batch(path, &batch?, lay, &mut acc, &mut any_null)?;
    }
    let Chunk {
        episode_id,
        step,
        mut columns,
    } = acc;
    if !any_null {
        columns.next_valid = None;
    }
    let episodes = episodes_from_rows(path, &episode_id, &step)?;
    drop((episode_id, step));
    let ds = Dataset::new_at(path, meta, columns, &episodes)?;
    if !opts.allow_nonfinite {
        ds.check_finite(path)?;
    }
    Ok(ds)
}

/// Groups rows into `(episode_id, len)` runs, checking `step` counts `0, 1, ...` inside each run.
pub fn episodes_from_rows(
    path: &Path,
    episode_id: &[i64],
    step: &[i64],
) -> Result<Vec<(i64, usize)>> {
    let mut out: Vec<(i64, usize)> = Vec::new();
    for (row, (&id, &s)) in episode_id.iter().zip(step).enumerate() {
        match out.last_mut() {
            Some((cur, len)) if *cur == id => {
                if s != *len as i64 {
                    return Err(DataError::invalid(
                        path,
                        format!(
                            "column `step`: row {row} (episode {id}) has step {s}, expected {len}; rows must be sorted by episode and step"
                        ),
                    ));
                }
                *len += 1;
            }
            _ => {
                if s != 0 {
                    return Err(DataError::invalid(
                        path,
                        format!(
                            "column `step`: episode {id} starts at row {row} with step {s}, expected 0"
                        ),
                    ));
                }
                out.push((id, 1));
            }
        }
    }
    Ok(out)
}
