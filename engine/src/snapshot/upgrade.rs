//! Version-1 snapshots, read by this build: their `vectors`, `promotions` and `trials`
//! sections are re-encoded in the version-2 layout before the projections restore them
//! (docs/FORMAT.md). Version 1 predates storage kinds: every config in it is 12 bytes
//! (`m`, `ef_construction`, `ef_search`) and means flat storage without refine; its
//! `vectors` section has no quantizer tag and no full-vector block. The other sections
//! did not change.

use std::borrow::Cow;

use crate::codec::{Dec, DecodeError, Enc};

/// `section`, of the projection `name`, in the version-2 layout.
///
/// # Errors
/// The section does not decode as version 1.
pub(crate) fn section_v1<'a>(name: &str, section: &'a [u8]) -> Result<Cow<'a, [u8]>, DecodeError> {
    let mut d = Dec::new(section);
    let mut e = Enc::with_capacity(section.len() + 1024);
    match name {
        "vectors" => vectors(&mut d, &mut e)?,
        "promotions" => promotions(&mut d, &mut e)?,
        "trials" => trials(&mut d, &mut e)?,
        _ => return Ok(Cow::Borrowed(section)),
    }
    d.finish()?;
    Ok(Cow::Owned(e.buf))
}

/// A version-1 config, written with flat storage and no refine.
fn config(d: &mut Dec<'_>, e: &mut Enc) -> Result<(), DecodeError> {
    let (m, ef_construction, ef_search) = (d.u32()?, d.u32()?, d.u32()?);
    let flat =
        crate::event::HnswConfig { m, ef_construction, ef_search, storage: crate::event::Storage::FLAT };
    crate::codec::write_config(e, &flat);
    Ok(())
}

fn str(d: &mut Dec<'_>, e: &mut Enc) -> Result<(), DecodeError> {
    e.str(d.str()?);
    Ok(())
}

fn bytes(d: &mut Dec<'_>, e: &mut Enc) -> Result<(), DecodeError> {
    e.bytes(d.bytes()?);
    Ok(())
}

fn opt_str(d: &mut Dec<'_>, e: &mut Enc) -> Result<(), DecodeError> {
    e.opt_str(d.opt_str()?);
    Ok(())
}

fn u64(d: &mut Dec<'_>, e: &mut Enc) -> Result<u64, DecodeError> {
    let v = d.u64()?;
    e.u64(v);
    Ok(v)
}

fn u32(d: &mut Dec<'_>, e: &mut Enc) -> Result<(), DecodeError> {
    e.u32(d.u32()?);
    Ok(())
}

fn u8(d: &mut Dec<'_>, e: &mut Enc) -> Result<u8, DecodeError> {
    let v = d.u8()?;
    e.u8(v);
    Ok(v)
}

/// A count, copied, refused if the rest cannot hold that many items of `min` bytes.
fn count(d: &mut Dec<'_>, e: &mut Enc, min: usize) -> Result<usize, DecodeError> {
    let n = d.count(min)?;
    e.u64(n as u64);
    Ok(n)
}

/// Per index: name, dimension, metric, creation config, promotions, graph config, next
/// label, (version 2: quantizer tag 0), entries, live bitmap, FAISS bytes, (version 2:
/// empty full vectors).
fn vectors(d: &mut Dec<'_>, e: &mut Enc) -> Result<(), DecodeError> {
    for _ in 0..count(d, e, 4)? {
        str(d, e)?;
        u32(d, e)?;
        u8(d, e)?;
        config(d, e)?;
        for _ in 0..count(d, e, 12)? {
            config(d, e)?;
        }
        config(d, e)?;
        u64(d, e)?; // next label
        e.u8(0); // no quantizer
        for _ in 0..count(d, e, 8 + 8 + 1 + 1)? {
            u64(d, e)?; // label
            str(d, e)?;
            opt_str(d, e)?;
            opt_str(d, e)?;
        }
        bytes(d, e)?; // live bitmap
        bytes(d, e)?; // the FAISS graph (flat: its vectors are in it)
        e.u64(0); // no full vectors
    }
    Ok(())
}

/// Per index: name, current (tag, promotion), history. A promotion: config, trial id,
/// promoted by, note, seq, time.
fn promotions(d: &mut Dec<'_>, e: &mut Enc) -> Result<(), DecodeError> {
    let promotion = |d: &mut Dec<'_>, e: &mut Enc| -> Result<(), DecodeError> {
        config(d, e)?;
        str(d, e)?;
        str(d, e)?;
        str(d, e)?;
        u64(d, e)?;
        u64(d, e)?;
        Ok(())
    };
    for _ in 0..count(d, e, 8 + 1 + 8)? {
        str(d, e)?;
        match u8(d, e)? {
            0 => {}
            1 => promotion(d, e)?,
            tag => return Err(d.error(format!("current tag {tag}"))),
        }
        for _ in 0..count(d, e, 12 + 3 * 8 + 16)? {
            promotion(d, e)?;
        }
    }
    Ok(())
}

/// Per index: name, last write seq, evaluation sets (unchanged), trials (each with its
/// config re-encoded).
fn trials(d: &mut Dec<'_>, e: &mut Enc) -> Result<(), DecodeError> {
    for _ in 0..count(d, e, 8 + 8 + 8 + 8)? {
        str(d, e)?;
        u64(d, e)?;
        for _ in 0..count(d, e, 8 + 8 + 1 + 4 + 4 + 8 + 8 + 8 + 8 + 4)? {
            u64(d, e)?;
            str(d, e)?;
            u8(d, e)?;
            u32(d, e)?;
            u32(d, e)?;
            u64(d, e)?;
            str(d, e)?;
            str(d, e)?;
            u64(d, e)?;
            u32(d, e)?;
        }
        for _ in 0..count(d, e, 8 + 8 + 8 + 8 + 5 * 4 + 6 * 8)? {
            u64(d, e)?;
            u64(d, e)?;
            str(d, e)?;
            str(d, e)?;
            config(d, e)?;
            u32(d, e)?; // k
            u32(d, e)?; // queries
            for _ in 0..6 {
                u64(d, e)?; // vectors, recall bits, p50, p99, build_ms, memory_bytes
            }
        }
    }
    Ok(())
}
