//! Arbitrary bytes as a cluster commit message. See `annal_fuzz::commit_decode`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| annal_fuzz::commit_decode(data));
