//! Arbitrary bytes as a snapshot object. See `annal_fuzz::snapshot_decode`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| annal_fuzz::snapshot_decode(data));
