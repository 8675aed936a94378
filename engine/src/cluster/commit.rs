//! The stream message of one commit: the frames a write appends together, so a batch
//! stays all or nothing in the stream (one message is stored whole or not at all).
//! docs/FORMAT.md, "Cluster commit message", has the byte table.
//!
//! | bytes | field |
//! |---|---|
//! | 0..4 | magic `ANC1` (version 1) |
//! | 4..8 | frame count `n`, u32 LE (1 to [`FRAMES_MAX`]) |
//! | then n times | frame length u32 LE, then the frame (docs/FORMAT.md, "Event frame") |
//! | last 4 | CRC-32 (IEEE) of every byte before it, u32 LE |

/// Most frames in one commit message: a group commit of many appends.
pub const FRAMES_MAX: usize = 1 << 20;

/// The first four bytes of a commit message.
pub const COMMIT_MAGIC: &[u8; 4] = b"ANC1";

/// Bytes of a commit message's header and trailer (magic, count, CRC).
pub const OVERHEAD: usize = 12;

/// Bytes `frames` take inside a commit message (each with its length).
pub fn frames_len<F: AsRef<[u8]>>(frames: &[F]) -> usize {
    frames.iter().map(|f| 4 + f.as_ref().len()).sum()
}

/// Encode `frames` as one commit message.
pub fn encode<F: AsRef<[u8]>>(frames: &[F]) -> Vec<u8> {
    let mut out = Vec::with_capacity(OVERHEAD + frames_len(frames));
    out.extend_from_slice(COMMIT_MAGIC);
    out.extend_from_slice(&(frames.len() as u32).to_le_bytes());
    for frame in frames {
        let frame = frame.as_ref();
        out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        out.extend_from_slice(frame);
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Decode a commit message into its frames (each still to be checked by the frame
/// decoder); `Err` says what is wrong.
pub fn decode(message: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let Some((body, crc)) = message.split_last_chunk::<4>() else {
        return Err(format!("{} bytes is shorter than a commit", message.len()));
    };
    if crc32fast::hash(body) != u32::from_le_bytes(*crc) {
        return Err("commit CRC mismatch".into());
    }
    let Some((magic, rest)) = body.split_first_chunk::<4>() else {
        return Err("no magic".into());
    };
    if magic != COMMIT_MAGIC {
        return Err(format!("magic {magic:?} is not an annal commit"));
    }
    let Some((count, mut rest)) = rest.split_first_chunk::<4>() else {
        return Err("no frame count".into());
    };
    let count = u32::from_le_bytes(*count) as usize;
    if count == 0 || count > FRAMES_MAX {
        return Err(format!("frame count {count} is outside 1..={FRAMES_MAX}"));
    }
    let mut frames = Vec::with_capacity(count);
    for i in 0..count {
        let Some((len, after)) = rest.split_first_chunk::<4>() else {
            return Err(format!("frame {i} has no length"));
        };
        let len = u32::from_le_bytes(*len) as usize;
        if after.len() < len {
            return Err(format!("frame {i} declares {len} bytes, {} remain", after.len()));
        }
        let (frame, after) = after.split_at(len);
        frames.push(frame.to_vec());
        rest = after;
    }
    if !rest.is_empty() {
        return Err(format!("{} bytes after the last frame", rest.len()));
    }
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_round_trips_its_frames_in_order() {
        let frames = vec![vec![1, 2, 3], vec![], vec![9; 1000]];
        assert_eq!(decode(&encode(&frames)).unwrap(), frames);
        assert_eq!(encode(&frames).len(), OVERHEAD + frames_len(&frames));
    }

    #[test]
    fn a_flipped_bit_a_cut_or_a_foreign_message_is_refused() {
        let good = encode(&[vec![7; 40]]);
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x10;
            assert!(decode(&bad).is_err(), "bit flip at byte {i} accepted");
        }
        for cut in 0..good.len() {
            assert!(decode(&good[..cut]).is_err(), "cut at {cut} accepted");
        }
        assert!(decode(b"hello world, not a commit").is_err());
        assert!(decode(&encode::<Vec<u8>>(&[])).is_err(), "an empty commit is refused");
    }
}
