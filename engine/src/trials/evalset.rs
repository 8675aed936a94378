//! The evaluation set object: queries with their exact ground truth, stored in the
//! primary bucket and registered by an `EvalSetCreated` event (docs/FORMAT.md).
//!
//! ```text
//! offset size field
//!      0    8 magic       "ANNALEVL"
//!      8    2 version     1
//!     10    2 reserved    0
//!     12    4 dimension   d
//!     16    4 queries     n
//!     20    4 k
//!     24    8 truth_seq   the last event applied when the truth was computed
//!     32  4nd vectors     n query vectors, f32 (as given; cosine ones are normalised
//!                         when used)
//!      .    . per query   str held-out id (empty: none), u32 count (<= k), then that
//!                         many str truth ids, nearest first (str: u16 length + UTF-8)
//!  end-4    4 crc32       CRC-32 of every byte before it
//! ```

use crate::codec::{self, Dec, DecodeError, Enc};

/// First bytes of every evaluation set object.
pub const MAGIC: &[u8; 8] = b"ANNALEVL";
/// The version written.
pub const VERSION: u16 = 1;
const HEADER_LEN: usize = 32;

/// An evaluation set.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalSet {
    /// Vector dimension.
    pub dimension: u32,
    /// Neighbours per query in the truth.
    pub k: u32,
    /// The last event applied when the truth was computed.
    pub truth_seq: u64,
    /// The queries, each `dimension` floats.
    pub queries: Vec<Vec<f32>>,
    /// Per query: the id held out of its truth (a sampled query's own record), if any.
    pub held_out: Vec<Option<String>>,
    /// Per query: the ids of its exact nearest neighbours, nearest first.
    pub truth: Vec<Vec<String>>,
}

/// An evaluation set object that does not decode.
#[derive(Debug, thiserror::Error)]
#[error("evaluation set object: {0}")]
pub struct EvalFormatError(pub String);

impl From<DecodeError> for EvalFormatError {
    fn from(e: DecodeError) -> Self {
        Self(e.to_string())
    }
}

impl EvalSet {
    /// The object's bytes.
    ///
    /// # Errors
    /// An id longer than 65,535 bytes or a count past `u32` (never, for validated input).
    pub fn encode(&self) -> Result<Vec<u8>, EvalFormatError> {
        let too_big = |what: &str| EvalFormatError(format!("{what} does not fit its field"));
        if self.held_out.len() != self.queries.len() || self.truth.len() != self.queries.len() {
            return Err(EvalFormatError("queries, held-out ids and truth lists differ in number".into()));
        }
        let n = u32::try_from(self.queries.len()).map_err(|_too_many| too_big("query count"))?;
        let mut out = Enc::with_capacity(HEADER_LEN + self.queries.len() * self.dimension as usize * 4 + 64);
        out.raw(MAGIC);
        out.u16(VERSION);
        out.u16(0);
        out.u32(self.dimension);
        out.u32(n);
        out.u32(self.k);
        out.u64(self.truth_seq);
        for q in &self.queries {
            if q.len() != self.dimension as usize {
                return Err(EvalFormatError(format!(
                    "a query has {} floats, not {}",
                    q.len(),
                    self.dimension
                )));
            }
            q.iter().for_each(|x| out.f32(*x));
        }
        let text = |out: &mut Enc, s: &str| -> Result<(), EvalFormatError> {
            out.u16(u16::try_from(s.len()).map_err(|_too_long| too_big("an id"))?);
            out.raw(s.as_bytes());
            Ok(())
        };
        for (held_out, truth) in self.held_out.iter().zip(&self.truth) {
            text(&mut out, held_out.as_deref().unwrap_or(""))?;
            out.u32(u32::try_from(truth.len()).map_err(|_too_long| too_big("a truth list"))?);
            for id in truth {
                text(&mut out, id)?;
            }
        }
        Ok(out.seal().0)
    }

    /// Read an object written by [`EvalSet::encode`], checking its CRC, header and every
    /// length against the bytes there are.
    ///
    /// # Errors
    /// [`EvalFormatError`] naming the first problem.
    pub fn decode(object: &[u8]) -> Result<Self, EvalFormatError> {
        let bad = |what: String| EvalFormatError(what);
        let body = codec::unseal(object, HEADER_LEN)?;
        let mut r = Dec::new(body);
        if r.take(MAGIC.len())? != MAGIC {
            return Err(bad("bad magic".into()));
        }
        let version = r.u16()?;
        if version != VERSION {
            return Err(bad(format!("unknown version {version}")));
        }
        r.u16()?;
        let dimension = r.u32()?;
        let n = r.u32()? as usize;
        let k = r.u32()?;
        let truth_seq = r.u64()?;
        // Bounds the engine writes within: a forged header cannot make the reader
        // allocate for more.
        if dimension == 0 || dimension > crate::limits::DIMENSION_MAX {
            return Err(bad(format!("dimension {dimension}")));
        }
        if n == 0 || n > crate::limits::EVAL_QUERIES_MAX as usize {
            return Err(bad(format!("{n} queries")));
        }
        if k == 0 || k as usize > crate::limits::SEARCH_K_MAX {
            return Err(bad(format!("k {k}")));
        }
        let floats = n.checked_mul(dimension as usize).filter(|f| f.saturating_mul(4) <= r.left());
        let Some(floats) = floats else {
            return Err(bad(format!("{n} queries of {dimension} floats do not fit")));
        };
        let raw = r.take(floats * 4)?;
        let flat: Vec<f32> =
            raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        let queries: Vec<Vec<f32>> = flat.chunks_exact(dimension as usize).map(<[f32]>::to_vec).collect();
        let mut held_out = Vec::with_capacity(n.min(r.left() / 6));
        let mut truth = Vec::with_capacity(n.min(r.left() / 6));
        let str16 = |r: &mut Dec<'_>| -> Result<String, EvalFormatError> {
            let len = usize::from(r.u16()?);
            let bytes = r.take(len)?;
            String::from_utf8(bytes.to_vec()).map_err(|e| EvalFormatError(format!("an id is not UTF-8: {e}")))
        };
        for _ in 0..n {
            let held = str16(&mut r)?;
            held_out.push((!held.is_empty()).then_some(held));
            let count = r.u32()?;
            if count > k || count as usize > r.left() / 2 {
                return Err(bad(format!("a truth list of {count} ids, k is {k}")));
            }
            truth.push((0..count).map(|_| str16(&mut r)).collect::<Result<Vec<_>, _>>()?);
        }
        if r.left() != 0 {
            return Err(bad(format!("{} bytes after the last query", r.left())));
        }
        Ok(Self { dimension, k, truth_seq, queries, held_out, truth })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set() -> EvalSet {
        EvalSet {
            dimension: 2,
            k: 3,
            truth_seq: 9,
            queries: vec![vec![1.0, 0.5], vec![-2.0, 0.0]],
            held_out: vec![Some("a".into()), None],
            truth: vec![vec!["b".into(), "c".into(), "d".into()], vec!["a".into()]],
        }
    }

    #[test]
    fn an_eval_set_round_trips() {
        let bytes = set().encode().unwrap();
        assert_eq!(EvalSet::decode(&bytes).unwrap(), set());
    }

    #[test]
    fn every_truncation_and_flipped_byte_is_refused_without_a_panic() {
        let bytes = set().encode().unwrap();
        for len in 0..bytes.len() {
            assert!(EvalSet::decode(&bytes[..len]).is_err(), "length {len}");
        }
        for at in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 0x08;
            assert!(EvalSet::decode(&bad).is_err(), "byte {at}");
        }
    }
}
