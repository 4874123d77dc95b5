//! File helpers: atomic writes and content hashes.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{DataError, Result};

/// Writes `path` atomically: `write` fills a temporary file in the same directory,
/// which is renamed over `path` only if `write` succeeds. On any error the temporary
/// file is removed and `path` is left untouched, so no half-written output ever exists.
pub fn atomic_write<F>(path: &Path, write: F) -> Result<()>
where
    F: FnOnce(&mut BufWriter<File>) -> Result<()>,
{
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(DataError::io(
            dir,
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "output directory does not exist",
            ),
        ));
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| DataError::io(dir, e))?;
    let (file, tmp_path) = tmp.into_parts();
    let mut w = BufWriter::new(file);
    write(&mut w)?;
    w.flush().map_err(|e| DataError::io(path, e))?;
    let file = w
        .into_inner()
        .map_err(|e| DataError::io(path, e.into_error()))?;
    file.sync_all().map_err(|e| DataError::io(path, e))?;
    // Temporary files are created 0600; give the output the 0644 of an ordinary new file.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp_path, std::fs::Permissions::from_mode(0o644))
            .map_err(|e| DataError::io(path, e))?;
    }
    tmp_path
        .persist(path)
        .map_err(|e| DataError::io(path, e.error))?;
    Ok(())
}

/// Hex sha256 of `bytes`.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Hex sha256 of a file's bytes.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| DataError::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

/// Hex sha256 of a directory: the hash of `relative_path\0sha256\n` lines of every file, in sorted order.
pub fn sha256_dir(dir: &Path) -> Result<String> {
    let mut files = Vec::new();
    walk(dir, &mut files)?;
    files.sort();
    let mut h = Sha256::new();
    for f in files {
        let rel = f
            .strip_prefix(dir)
            .unwrap_or(&f)
            .to_string_lossy()
            .replace('\\', "/");
        h.update(rel.as_bytes());
        h.update([0]);
        h.update(sha256_file(&f)?.as_bytes());
        h.update(b"\n");
    }
    Ok(hex(&h.finalize()))
}

/// Hex sha256 of a file or a directory.
pub fn sha256_path(path: &Path) -> Result<String> {
    if path.is_dir() {
        sha256_dir(path)
    } else {
        sha256_file(path)
    }
}

fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        let p = entry.map_err(|e| DataError::io(dir, e))?.path();
        if p.is_dir() {
            walk(&p, out)?;
        } else {
            out.push(p);
        }
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
