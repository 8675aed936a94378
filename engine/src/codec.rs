//! The one little-endian codec of the engine's byte formats (snapshot sections, archive
//! segments, cut objects, evaluation sets; docs/FORMAT.md): fixed-width integers,
//! length-prefixed byte strings, and the CRC-32 trailer. Read back with every length
//! checked against what is left (a corrupt length is an error, never a panic or a huge
//! allocation).

/// Bytes being written.
#[derive(Default)]
pub struct Enc {
    /// The bytes so far.
    pub buf: Vec<u8>,
}

impl Enc {
    /// An encoder with room for `bytes`.
    pub fn with_capacity(bytes: usize) -> Self {
        Self { buf: Vec::with_capacity(bytes) }
    }
    /// Raw bytes, no length.
    pub fn raw(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(v);
    }
    /// `u8`.
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    /// `u16` LE.
    pub fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// `f32` LE.
    pub fn f32(&mut self, v: f32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// `u32` LE.
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// `u64` LE.
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// `i64` LE.
    pub fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// `u64` length, then the bytes.
    pub fn bytes(&mut self, v: &[u8]) {
        self.u64(v.len() as u64);
        self.buf.extend_from_slice(v);
    }
    /// A UTF-8 string as [`Enc::bytes`].
    pub fn str(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }
    /// Append the CRC-32 of every byte so far (the trailer of the framed objects), and
    /// return the bytes with the CRC-32 of the whole, trailer included (what a
    /// registration records).
    pub fn seal(mut self) -> (Vec<u8>, u32) {
        let crc = crc32fast::hash(&self.buf);
        self.u32(crc);
        let whole = crc32fast::hash(&self.buf);
        (self.buf, whole)
    }
    /// `0`, or `1` then the string.
    pub fn opt_str(&mut self, v: Option<&str>) {
        match v {
            None => self.u8(0),
            Some(s) => {
                self.u8(1);
                self.str(s);
            }
        }
    }
}

/// A section body could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("byte {at}: {problem}")]
pub struct DecodeError {
    /// Offset in the section.
    pub at: usize,
    /// What was wrong.
    pub problem: String,
}

/// A section body being read.
#[derive(Clone)]
pub struct Dec<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Dec<'a> {
    /// Read `buf` from its start.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// An error at the current offset.
    pub fn error(&self, problem: impl Into<String>) -> DecodeError {
        DecodeError { at: self.pos, problem: problem.into() }
    }

    /// Bytes not read yet.
    pub fn left(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The next `n` bytes, raw.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).filter(|end| *end <= self.buf.len());
        let Some(end) = end else {
            return Err(self.error(format!("{n} bytes wanted, {} left", self.buf.len() - self.pos)));
        };
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let bytes = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    /// `u8`.
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }
    /// `u32` LE.
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    /// `u16` LE.
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    /// `u64` LE.
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    /// `i64` LE.
    pub fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_le_bytes(self.array()?))
    }
    /// A length-prefixed byte string.
    pub fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = self.u64()?;
        let len = usize::try_from(len).map_err(|e| self.error(format!("length {len}: {e}")))?;
        self.take(len)
    }
    /// A length-prefixed UTF-8 string.
    pub fn str(&mut self) -> Result<&'a str, DecodeError> {
        let at = self.pos;
        let bytes = self.bytes()?;
        std::str::from_utf8(bytes).map_err(|e| DecodeError { at, problem: format!("not UTF-8: {e}") })
    }
    /// `0`, or `1` then a string.
    pub fn opt_str(&mut self) -> Result<Option<&'a str>, DecodeError> {
        match self.u8()? {
            0 => Ok(None),
            1 => self.str().map(Some),
            tag => Err(self.error(format!("option tag {tag}"))),
        }
    }
    /// A count of items that each take at least `min_bytes`: refused if the rest of the
    /// section cannot hold that many, so a corrupt count cannot make a huge allocation.
    pub fn count(&mut self, min_bytes: usize) -> Result<usize, DecodeError> {
        let n = self.u64()?;
        let left = (self.buf.len() - self.pos) as u64;
        if n.saturating_mul(min_bytes.max(1) as u64) > left {
            return Err(self.error(format!("count {n} cannot fit in the {left} bytes left")));
        }
        usize::try_from(n).map_err(|e| self.error(format!("count {n}: {e}")))
    }
    /// Whether every byte was read.
    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(self.error(format!("{} trailing bytes", self.buf.len() - self.pos)))
        }
    }
}

/// Split `object` into its body and check its CRC-32 trailer (written by [`Enc::seal`]).
///
/// # Errors
/// Shorter than `min_body` plus the trailer, or the trailer does not match; the message
/// says which.
pub fn unseal(object: &[u8], min_body: usize) -> Result<&[u8], DecodeError> {
    let Some(body_len) = object.len().checked_sub(4).filter(|n| *n >= min_body) else {
        return Err(DecodeError { at: 0, problem: format!("truncated: {} bytes", object.len()) });
    };
    let (body, trailer) = object.split_at(body_len);
    let mut d = Dec::new(trailer);
    let stored = d.u32()?;
    let actual = crc32fast::hash(body);
    if stored != actual {
        return Err(DecodeError {
            at: body_len,
            problem: format!("trailer CRC-32 {stored:08x}, computed {actual:08x}"),
        });
    }
    Ok(body)
}

/// Bytes of an encoded [`crate::event::HnswConfig`] (snapshot sections, version 2).
pub const CONFIG_BYTES: usize = 21;

/// Write an HNSW configuration: `u32` m, ef_construction, ef_search, then its storage:
/// `u8` kind (0 flat, 1 fp16, 2 sq8, 3 sq4, 4 pq), `u32` pq_m, `u32` refine.
pub fn write_config(e: &mut Enc, c: &crate::event::HnswConfig) {
    use crate::event::StorageKind;
    e.u32(c.m);
    e.u32(c.ef_construction);
    e.u32(c.ef_search);
    e.u8(match c.storage.kind {
        StorageKind::Flat => 0,
        StorageKind::Fp16 => 1,
        StorageKind::Sq8 => 2,
        StorageKind::Sq4 => 3,
        StorageKind::Pq => 4,
    });
    e.u32(c.storage.pq_m);
    e.u32(c.storage.refine);
}

/// Read a configuration written by [`write_config`].
///
/// # Errors
/// Truncated, or an unknown storage kind.
pub fn read_config(d: &mut Dec<'_>) -> Result<crate::event::HnswConfig, DecodeError> {
    use crate::event::{HnswConfig, Storage, StorageKind};
    let (m, ef_construction, ef_search) = (d.u32()?, d.u32()?, d.u32()?);
    let kind = match d.u8()? {
        0 => StorageKind::Flat,
        1 => StorageKind::Fp16,
        2 => StorageKind::Sq8,
        3 => StorageKind::Sq4,
        4 => StorageKind::Pq,
        tag => return Err(d.error(format!("storage kind {tag}"))),
    };
    let storage = Storage { kind, pq_m: d.u32()?, refine: d.u32()? };
    Ok(HnswConfig { m, ef_construction, ef_search, storage })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_round_trips_and_a_corrupt_length_is_an_error_not_a_panic() {
        let mut e = Enc::default();
        e.u8(7);
        e.u32(0xdead_beef);
        e.i64(-5);
        e.str("héllo");
        e.opt_str(None);
        e.opt_str(Some("x"));
        let mut d = Dec::new(&e.buf);
        assert_eq!(d.u8().unwrap(), 7);
        assert_eq!(d.u32().unwrap(), 0xdead_beef);
        assert_eq!(d.i64().unwrap(), -5);
        assert_eq!(d.str().unwrap(), "héllo");
        assert_eq!(d.opt_str().unwrap(), None);
        assert_eq!(d.opt_str().unwrap(), Some("x"));
        d.finish().unwrap();

        let mut bad = Enc::default();
        bad.u64(u64::MAX);
        assert!(Dec::new(&bad.buf).bytes().is_err());
        assert!(Dec::new(&bad.buf).count(8).is_err());
        assert!(Dec::new(&e.buf[..3]).u32().is_err());
    }

    #[test]
    fn a_sealed_object_unseals_and_any_flipped_byte_or_truncation_is_refused() {
        let mut e = Enc::default();
        e.raw(b"MAGIC");
        e.u16(1);
        e.f32(0.5);
        let (object, whole) = e.seal();
        assert_eq!(whole, crc32fast::hash(&object));
        assert_eq!(unseal(&object, 5).unwrap().len(), object.len() - 4);
        for i in 0..object.len() {
            let mut bad = object.clone();
            bad[i] ^= 0x10;
            assert!(unseal(&bad, 5).is_err(), "flipped byte {i}");
            assert!(unseal(&object[..i], 5).is_err(), "truncated to {i}");
        }
    }
}
