//! The committed form of a medium-replay buffer (`datasets/policies/<env>-medium-replay.archive.parquet`).
//!
//! A medium-replay dataset is the medium policy's own training buffer. Training runs on
//! floating-point kernels whose results differ between CPU kinds (faer picks AVX-512 or AVX2
//! kernels at run time, and the sums round differently), so the buffer cannot be regenerated
//! elsewhere bit for bit: it is committed. D4RL's medium-replay buffers hold 200 000 to 400 000
//! transitions, 40-60 MB each in orl's dataset format, so the committed form drops what can
//! be recomputed exactly:
//!
//! - `step` (the row's index within its episode);
//! - `next_observation` wherever it is the following row's `observation` of the same episode
//!   (every row but an episode's last in an online buffer): stored as null there, and kept on
//!   an episode's last row and wherever it differs;
//!
//! and stores the float columns with Parquet's `BYTE_STREAM_SPLIT` encoding under zstd (floats'
//! exponent bytes compress, their mantissas do not). The other columns, the schema and the
//! `orl.meta` metadata are orl's dataset format (`docs/dataset-format.md`). [`read`] restores
//! the dataset exactly (the same [`Dataset`], so `gen-datasets` writes the same bytes and the
//! manifest's medium-replay hashes check the round trip); Hopper's 160 000-row buffer went from
//! 21.3 MB to about 8.5 MB.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail, ensure};
use arrow::array::{
    Array, ArrayRef, AsArray, FixedSizeListArray, Float32Array, Int64Array, RecordBatch,
};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{DataType, Field, Int64Type, Schema};
use orl_data::{Dataset, OpenOptions, from_record_batches, to_record_batch};
use parquet::arrow::{
    ArrowSchemaConverter, ArrowWriter, arrow_reader::ParquetRecordBatchReaderBuilder,
};
use parquet::basic::{Compression, Encoding, Type as PhysicalType, ZstdLevel};
use parquet::file::properties::WriterProperties;

/// Metadata key marking the file as an archive, with its layout version.
const ARCHIVE_KEY: &str = "orl.buffer_archive";
const ARCHIVE_VERSION: &str = "1";
/// zstd level of the archive: written once, read rarely.
const ZSTD_LEVEL: i32 = 19;

/// Writes `ds` to `path` as an archive, atomically.
pub fn write(ds: &Dataset, path: &Path) -> Result<()> {
    let full = to_record_batch(ds)?;
    let schema = full.schema();
    let mut fields = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    let ids = full
        .column_by_name("episode_id")
        .context("episode_id")?
        .as_primitive::<Int64Type>()
        .clone();
    let obs = full.column_by_name("observation").context("observation")?;
    let od = ds.obs_dim();
    for (f, c) in schema.fields().iter().zip(full.columns()) {
        match f.name().as_str() {
            "step" => continue,
            "next_observation" => {
                let next = c.as_fixed_size_list();
                let (nv, ov) = (values(next)?, values(obs.as_fixed_size_list())?);
                let keep: Vec<bool> = (0..ds.len())
                    .map(|i| {
                        let same_episode = i + 1 < ds.len() && ids.value(i + 1) == ids.value(i);
                        let known = next.is_valid(i);
                        known
                            && !(same_episode
                                && nv[i * od..(i + 1) * od]
                                    .iter()
                                    .zip(&ov[(i + 1) * od..(i + 2) * od])
                                    .all(|(a, b)| a.to_bits() == b.to_bits()))
                    })
                    .collect();
                let item = Arc::new(Field::new("item", DataType::Float32, false));
                let list = FixedSizeListArray::try_new(
                    item,
                    od as i32,
                    Arc::new(Float32Array::from(nv.to_vec())),
                    Some(NullBuffer::from(keep)),
                )?;
                fields.push(Field::new(f.name(), f.data_type().clone(), true));
                columns.push(Arc::new(list));
            }
            _ => {
                fields.push(f.as_ref().clone());
                columns.push(c.clone());
            }
        }
    }
    let mut meta = schema.metadata().clone();
    meta.insert(ARCHIVE_KEY.to_string(), ARCHIVE_VERSION.to_string());
    let schema = Arc::new(Schema::new(fields).with_metadata(meta));
    let batch = RecordBatch::try_new(schema.clone(), columns)?;

    let mut props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(ZSTD_LEVEL)?))
        .set_created_by("orl xtask buffer_archive".into());
    for c in ArrowSchemaConverter::new().convert(&schema)?.columns() {
        if matches!(
            c.physical_type(),
            PhysicalType::FLOAT | PhysicalType::DOUBLE
        ) {
            props = props
                .set_column_dictionary_enabled(c.path().clone(), false)
                .set_column_encoding(c.path().clone(), Encoding::BYTE_STREAM_SPLIT);
        }
    }
    let props = props.build();
    orl_data::fsutil::atomic_write(path, |w| {
        let err = |e: parquet::errors::ParquetError| orl_data::DataError::Invalid {
            path: path.to_path_buf(),
            detail: format!("writing the archive: {e}"),
        };
        let mut writer = ArrowWriter::try_new(w, schema.clone(), Some(props)).map_err(err)?;
        writer.write(&batch).map_err(err)?;
        writer.close().map_err(err)?;
        Ok(())
    })?;
    Ok(())
}

/// Reads an archive back into the dataset [`write`] was given.
pub fn read(path: &Path) -> Result<Dataset> {
    let ctx = || format!("reading the buffer archive {}", path.display());
    let file = std::fs::File::open(path).with_context(ctx)?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).with_context(ctx)?;
    let schema = builder.schema().clone();
    if schema.metadata().get(ARCHIVE_KEY).map(String::as_str) != Some(ARCHIVE_VERSION) {
        bail!(
            "{}: not a buffer archive (metadata `{ARCHIVE_KEY}` = {ARCHIVE_VERSION} missing)",
            path.display()
        );
    }
    let batches = builder
        .build()
        .with_context(ctx)?
        .collect::<std::result::Result<Vec<_>, _>>()
        .with_context(ctx)?;
    let batch = arrow::compute::concat_batches(&schema, &batches).with_context(ctx)?;
    let n = batch.num_rows();
    let col = |name: &str| {
        batch
            .column_by_name(name)
            .with_context(|| format!("{}: no column `{name}`", path.display()))
    };
    let ids = col("episode_id")?.as_primitive::<Int64Type>().clone();
    let mut step = Vec::with_capacity(n);
    for i in 0..n {
        step.push(if i > 0 && ids.value(i - 1) == ids.value(i) {
            step[i - 1] + 1
        } else {
            0i64
        });
    }
    let obs = col("observation")?.as_fixed_size_list();
    let next = col("next_observation")?.as_fixed_size_list();
    let od = obs.value_length() as usize;
    let ov = values(obs)?;
    let mut nv = values(next)?.to_vec();
    ensure!(
        nv.len() == n * od && ov.len() == n * od,
        "{}: observation columns of unequal length",
        path.display()
    );
    let mut valid = Vec::with_capacity(n);
    for i in 0..n {
        if next.is_valid(i) {
            valid.push(true);
        } else if i + 1 < n && ids.value(i + 1) == ids.value(i) {
            nv[i * od..(i + 1) * od].copy_from_slice(&ov[(i + 1) * od..(i + 2) * od]);
            valid.push(true);
        } else {
            nv[i * od..(i + 1) * od].fill(0.0);
            valid.push(false);
        }
    }
    let item = Arc::new(Field::new("item", DataType::Float32, false));
    let nulls = Some(NullBuffer::from(valid)).filter(|b| b.null_count() > 0);
    let next =
        FixedSizeListArray::try_new(item, od as i32, Arc::new(Float32Array::from(nv)), nulls)?;
    let mut fields = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for (f, c) in schema.fields().iter().zip(batch.columns()) {
        match f.name().as_str() {
            "next_observation" => {
                fields.push(f.as_ref().clone());
                columns.push(Arc::new(next.clone()));
            }
            name => {
                fields.push(f.as_ref().clone());
                columns.push(c.clone());
                if name == "episode_id" {
                    fields.push(Field::new("step", DataType::Int64, false));
                    columns.push(Arc::new(Int64Array::from(std::mem::take(&mut step))));
                }
            }
        }
    }
    let mut meta = schema.metadata().clone();
    meta.remove(ARCHIVE_KEY);
    let schema = Schema::new(fields).with_metadata(meta);
    let batch = RecordBatch::try_new(Arc::new(schema.clone()), columns).with_context(ctx)?;
    Ok(from_record_batches(
        path,
        &schema,
        &[batch],
        &OpenOptions::default(),
    )?)
}

/// The flat `f32` values of a `FixedSizeList<Float32>` column.
fn values(a: &FixedSizeListArray) -> Result<&[f32]> {
    Ok(a.values()
        .as_primitive_opt::<arrow::datatypes::Float32Type>()
        .context("expected FixedSizeList<Float32>")?
        .values())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dataset survives the round trip exactly, including a `next_observation` that differs
    /// from the following row and an unknown one (the manifest's medium-replay hashes check the
    /// committed archives).
    #[test]
    fn archive_round_trips_a_dataset_with_unknown_and_differing_next_observations() -> Result<()> {
        use orl_data::{ActionSpace, ObservationSpace};
        use orl_data::{Actions, Columns, DatasetMeta};
        // Episode 7: 3 rows, next of row 1 differs from row 2's observation (kept), last row's
        // next known. Episode 9: 2 rows, last row's next unknown.
        let obs = vec![0.0, 1.0, 2.0, 3.0, 4.0f32];
        let mut next = vec![1.0, 2.5, 5.0, 4.0, 0.0f32];
        next[4] = 0.0;
        let cols = Columns {
            observations: obs,
            next_observations: next,
            next_valid: Some(vec![true, true, true, true, false]),
            actions: Actions::Continuous {
                dim: 1,
                values: vec![0.1, 0.2, 0.3, 0.4, 0.5],
            },
            rewards: vec![1.0, 2.0, 3.0, 4.0, 5.0],
            terminals: vec![false, false, true, false, false],
            timeouts: vec![false; 5],
            behavior_log_prob: Some(vec![-1.0, -2.0, -3.0, -4.0, -5.0]),
        };
        let meta = DatasetMeta::new(
            ObservationSpace {
                dim: 1,
                low: None,
                high: None,
            },
            ActionSpace::Continuous {
                dim: 1,
                low: None,
                high: None,
            },
        );
        let ds = Dataset::new(meta, cols, &[(7, 3), (9, 2)])?;
        let dir = tempfile::tempdir()?;
        let p = dir.path().join("a.parquet");
        write(&ds, &p)?;
        assert_eq!(read(&p)?, ds);
        // Only what cannot be recomputed is stored: rows 1, 2 and (null) 4 of `next`.
        let f = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&p)?)?;
        assert!(f.schema().field_with_name("step").is_err());
        let b = f.build()?.next().context("a batch")??;
        let stored = b.column_by_name("next_observation").context("next")?;
        assert_eq!(stored.null_count(), 3);
        // A dataset file is not an archive.
        let plain = dir.path().join("plain.parquet");
        orl_data::write_parquet(&ds, &plain, &orl_data::WriteOptions::default())?;
        let err = read(&plain)
            .err()
            .context("a plain dataset file is refused")?;
        assert!(
            format!("{err:#}").contains("not a buffer archive"),
            "{err:#}"
        );
        Ok(())
    }
}
