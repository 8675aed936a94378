//! The full vectors of a quantized graph, kept outside it: an unnamed scratch file
//! (created in the scratch directory, gone when closed or when the process dies), one
//! vector per graph position, `dim` native-endian `f32`s each. Only the pages a search
//! touches are read (into the page cache, not the process's heap), so a quantized
//! graph's resident size is its codes and links.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::OnceLock;

use super::error::HnswError;

/// Where scratch files are created: set once per process by the first engine opened
/// (its data directory), else (or when that directory is gone) the system's temporary
/// directory.
static SCRATCH_DIR: OnceLock<PathBuf> = OnceLock::new();

/// Create scratch files in `dir` from now on, unless a directory was set already.
pub(crate) fn set_scratch_dir(dir: PathBuf) {
    let _ = SCRATCH_DIR.set(dir);
}

fn scratch_dir() -> PathBuf {
    SCRATCH_DIR.get().cloned().unwrap_or_else(std::env::temp_dir)
}

fn io(op: &'static str) -> impl FnOnce(std::io::Error) -> HnswError {
    move |source| HnswError::Scratch { op, source }
}

/// Full vectors at positions `0..len`.
pub(crate) struct FullVectors {
    file: File,
    dim: usize,
    len: usize,
}

impl FullVectors {
    /// An empty store for `dim`-dimensional vectors.
    pub(crate) fn new(dim: usize) -> Result<Self, HnswError> {
        let dir = scratch_dir();
        let file = match tempfile::tempfile_in(&dir) {
            Ok(file) => file,
            // The directory of an engine since closed and removed (tests open many):
            // the system's temporary directory still takes the file.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                tracing::debug!(dir = %dir.display(), "scratch directory gone; using the temporary directory");
                tempfile::tempfile().map_err(io("create"))?
            }
            Err(error) => return Err(io("create")(error)),
        };
        Ok(Self { file, dim, len: 0 })
    }

    /// Vectors stored.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Append `vectors` (a whole number of vectors) at the next positions.
    pub(crate) fn push(&mut self, vectors: &[f32]) -> Result<(), HnswError> {
        let n = vectors.len() / self.dim.max(1);
        if n * self.dim != vectors.len() {
            return Err(HnswError::Shape { expected: n * self.dim, actual: vectors.len() });
        }
        let offset = (self.len * self.dim * 4) as u64;
        self.file.write_all_at(bytemuck::cast_slice(vectors), offset).map_err(io("write"))?;
        self.len += n;
        Ok(())
    }

    /// Append vectors given as little-endian bytes (a snapshot's), in pieces.
    pub(crate) fn push_le_bytes(&mut self, bytes: &[u8]) -> Result<(), HnswError> {
        let row = self.dim * 4;
        if row == 0 || !bytes.len().is_multiple_of(row) {
            return Err(HnswError::Shape { expected: row, actual: bytes.len() % row.max(1) });
        }
        let mut buf = Vec::new();
        for piece in bytes.chunks(row * 1024) {
            buf.clear();
            buf.extend(piece.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])));
            self.push(&buf)?;
        }
        Ok(())
    }

    /// Read the vectors at positions `start..start + out.len() / dim` into `out`.
    pub(crate) fn read(&self, start: usize, out: &mut [f32]) -> Result<(), HnswError> {
        let n = out.len() / self.dim.max(1);
        if n * self.dim != out.len() || start + n > self.len {
            return Err(HnswError::Shape { expected: n * self.dim, actual: out.len() });
        }
        let offset = (start * self.dim * 4) as u64;
        self.file.read_exact_at(bytemuck::cast_slice_mut(out), offset).map_err(io("read"))
    }

    /// Write every vector to `out` as little-endian `f32`s, a piece at a time.
    pub(crate) fn write_le(&self, out: &mut dyn std::io::Write) -> Result<(), HnswError> {
        let per = (4 * 1024 * 1024 / (4 * self.dim.max(1))).max(1);
        let mut buf = vec![0f32; per * self.dim];
        let mut bytes = Vec::with_capacity(buf.len() * 4);
        let mut at = 0;
        while at < self.len {
            let n = per.min(self.len - at);
            self.read(at, &mut buf[..n * self.dim])?;
            bytes.clear();
            bytes.extend(buf[..n * self.dim].iter().flat_map(|x| x.to_le_bytes()));
            out.write_all(&bytes).map_err(io("write snapshot"))?;
            at += n;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_read_back_at_their_positions_and_out_of_range_is_an_error() {
        let mut full = FullVectors::new(3).unwrap();
        full.push(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        full.push_le_bytes(&[7f32, 8.0, 9.0].iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<_>>())
            .unwrap();
        assert_eq!(full.len(), 3);
        let mut out = [0f32; 6];
        full.read(1, &mut out).unwrap();
        assert_eq!(out, [4.0, 5.0, 6.0, 7.0, 8.0, 9.0]);
        assert!(full.read(2, &mut out).is_err(), "past the end");
        assert!(full.push(&[1.0]).is_err(), "not a whole vector");
        let mut le = Vec::new();
        full.write_le(&mut le).unwrap();
        assert_eq!(le.len(), 9 * 4);
        assert_eq!(&le[12..16], &4f32.to_le_bytes());
    }
}
