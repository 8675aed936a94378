//! Arbitrary payloads behind a valid header and checksum, so the fuzzer reaches the
//! rkyv validation of every kind instead of stopping at the CRC: decoding must return
//! an error or an event, never panic.
#![no_main]

use annal_engine::event::{decode, encode, FRAME_VERSION};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, payload)) = data.split_first() else { return };
    let Ok(len) = u32::try_from(payload.len()) else { return };
    let mut frame = vec![FRAME_VERSION, kind % 12, 0, 0];
    frame.extend_from_slice(&len.to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&frame);
    crc.update(payload);
    frame.extend_from_slice(&crc.finalize().to_le_bytes());
    frame.extend_from_slice(payload);
    if let Ok(event) = decode(0, &frame) {
        let once = encode(&event).expect("a decoded event re-encodes");
        let twice = encode(&decode(0, &once).expect("a re-encoded event decodes")).expect("re-encodes");
        assert_eq!(once, twice);
    }
});
