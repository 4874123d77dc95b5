//! Strict HDF5 reading on top of `hdf5-pure`: every read checks the stored dtype first, so a
//! string or integer where floats belong is an error naming the key, never a silent cast.

use std::path::{Path, PathBuf};

use hdf5_pure::{AttrValue, DType};

use crate::error::{DataError, Result};

/// An open HDF5 file plus its path for error messages.
pub(crate) struct H5 {
    pub path: PathBuf,
    pub file: hdf5_pure::File,
}

/// Float data read from a key, with whether it had to be narrowed from float64.
pub(crate) struct Floats {
    pub values: Vec<f32>,
    pub shape: Vec<usize>,
    pub narrowed: bool,
}

fn dims(s: Vec<u64>) -> Vec<usize> {
    s.into_iter().map(|d| d as usize).collect()
}

impl H5 {
    pub fn open(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
        if !hdf5_pure::is_hdf5_bytes(&bytes) {
            return Err(DataError::corrupt(
                path,
                "HDF5",
                "no HDF5 signature (not an HDF5 file, or truncated at the start)",
            ));
        }
        let file =
            hdf5_pure::File::from_bytes(bytes).map_err(|e| DataError::corrupt(path, "HDF5", e))?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Whether a dataset exists at `key` (`a/b/c` paths allowed).
    pub fn has(&self, key: &str) -> bool {
        let (parent, name) = match key.rsplit_once('/') {
            Some((p, n)) => (Some(p), n),
            None => (None, key),
        };
        let group = match parent {
            None => Ok(self.file.root()),
            Some(p) => self.file.group(p),
        };
        group
            .and_then(|g| g.datasets())
            .is_ok_and(|d| d.iter().any(|x| x == name))
    }

    /// Names of the datasets in the root group.
    pub fn root_datasets(&self) -> Result<Vec<String>> {
        self.file
            .root()
            .datasets()
            .map_err(|e| DataError::corrupt(&self.path, "HDF5", e))
    }

    /// Names of the groups in the root group.
    pub fn root_groups(&self) -> Result<Vec<String>> {
        self.file
            .root()
            .groups()
            .map_err(|e| DataError::corrupt(&self.path, "HDF5", e))
    }

    fn ds(&self, key: &str) -> Result<hdf5_pure::Dataset> {
        if !self.has(key) {
            return Err(DataError::missing(&self.path, "HDF5 dataset", key));
        }
        self.file
            .dataset(key)
            .map_err(|e| DataError::corrupt(&self.path, "HDF5", format!("`{key}`: {e}")))
    }

    fn err(&self, key: &str, e: impl std::fmt::Display) -> DataError {
        DataError::corrupt(&self.path, "HDF5", format!("`{key}`: {e}"))
    }

    pub fn shape(&self, key: &str) -> Result<Vec<usize>> {
        Ok(dims(self.ds(key)?.shape().map_err(|e| self.err(key, e))?))
    }

    fn dtype(&self, key: &str) -> Result<(hdf5_pure::Dataset, DType)> {
        let d = self.ds(key)?;
        let t = d.dtype().map_err(|e| self.err(key, e))?;
        Ok((d, t))
    }

    /// float32 data; float64 is accepted and narrowed (reported through `narrowed`).
    pub fn floats(&self, key: &str) -> Result<Floats> {
        let (d, t) = self.dtype(key)?;
        let shape = dims(d.shape().map_err(|e| self.err(key, e))?);
        let (values, narrowed) = match t {
            DType::F32 => (d.read_f32().map_err(|e| self.err(key, e))?, false),
            DType::F64 => {
                let v = d.read_f64().map_err(|e| self.err(key, e))?;
                let narrowed = v.iter().any(|&x| f64::from(x as f32) != x && !x.is_nan());
                (v.into_iter().map(|x| x as f32).collect(), narrowed)
            }
            other => {
                return Err(DataError::dtype(
                    &self.path,
                    key,
                    "float32 or float64",
                    other,
                ));
            }
        };
        Ok(Floats {
            values,
            shape,
            narrowed,
        })
    }

    /// float64 data (float32 is widened exactly).
    pub fn f64s(&self, key: &str) -> Result<(Vec<f64>, Vec<usize>)> {
        let (d, t) = self.dtype(key)?;
        let shape = dims(d.shape().map_err(|e| self.err(key, e))?);
        let v = match t {
            DType::F32 | DType::F64 => d.read_f64().map_err(|e| self.err(key, e))?,
            other => {
                return Err(DataError::dtype(
                    &self.path,
                    key,
                    "float32 or float64",
                    other,
                ));
            }
        };
        Ok((v, shape))
    }

    /// Integer data of any width (unsigned 64-bit excluded), as i64.
    pub fn ints(&self, key: &str) -> Result<(Vec<i64>, Vec<usize>)> {
        let (d, t) = self.dtype(key)?;
        let shape = dims(d.shape().map_err(|e| self.err(key, e))?);
        let v = match t {
            DType::I8
            | DType::I16
            | DType::I32
            | DType::I64
            | DType::U8
            | DType::U16
            | DType::U32 => d.read_i64().map_err(|e| self.err(key, e))?,
            other => return Err(DataError::dtype(&self.path, key, "an integer type", other)),
        };
        Ok((v, shape))
    }

    /// Whether the dataset at `key` holds integers (used to tell discrete actions).
    pub fn is_integer(&self, key: &str) -> Result<bool> {
        let (_, t) = self.dtype(key)?;
        Ok(matches!(
            t,
            DType::I8
                | DType::I16
                | DType::I32
                | DType::I64
                | DType::U8
                | DType::U16
                | DType::U32
                | DType::U64
        ))
    }

    /// Booleans: h5py's enum {FALSE, TRUE}, or integers/floats holding only 0 and 1.
    pub fn bools(&self, key: &str) -> Result<(Vec<bool>, Vec<usize>)> {
        let (d, t) = self.dtype(key)?;
        let shape = dims(d.shape().map_err(|e| self.err(key, e))?);
        let raw: Vec<f64> = match &t {
            DType::Enum(names) if names.len() == 2 => d
                .read_i64()
                .map_err(|e| self.err(key, e))?
                .into_iter()
                .map(|x| x as f64)
                .collect(),
            DType::I8
            | DType::I16
            | DType::I32
            | DType::I64
            | DType::U8
            | DType::U16
            | DType::U32
            | DType::F32
            | DType::F64 => d.read_f64().map_err(|e| self.err(key, e))?,
            other => {
                return Err(DataError::dtype(
                    &self.path,
                    key,
                    "bool (HDF5 enum FALSE/TRUE) or 0/1 numbers",
                    other,
                ));
            }
        };
        let mut out = Vec::with_capacity(raw.len());
        for (row, x) in raw.into_iter().enumerate() {
            out.push(match x {
                0.0 => false,
                1.0 => true,
                _ => {
                    return Err(DataError::invalid(
                        &self.path,
                        format!("`{key}` must hold booleans (0/1) but row {row} holds {x}"),
                    ));
                }
            });
        }
        Ok((out, shape))
    }

    /// A scalar or 1-element string dataset, if present and a string.
    pub fn string(&self, key: &str) -> Option<String> {
        let d = self.file.dataset(key).ok()?;
        d.read_string().ok()?.into_iter().next()
    }

    /// A scalar integer dataset, if present and integral.
    pub fn int_scalar(&self, key: &str) -> Option<i64> {
        if !self.has(key) {
            return None;
        }
        self.ints(key).ok()?.0.first().copied()
    }

    /// Root attributes (empty on error).
    pub fn root_attrs(&self) -> std::collections::HashMap<String, AttrValue> {
        self.file.root().attrs().unwrap_or_default()
    }
}

/// The row count and per-row width of a 1-D `(N,)` or 2-D `(N, d)` array.
pub(crate) fn rows_width(path: &Path, key: &str, shape: &[usize]) -> Result<(usize, usize)> {
    match shape {
        [n] => Ok((*n, 1)),
        [n, d] => Ok((*n, *d)),
        other => Err(DataError::shape(
            path,
            key,
            "a 1-D or 2-D array",
            format!("shape {other:?}"),
        )),
    }
}
