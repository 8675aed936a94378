//! Arbitrary bytes into the event frame decoder. See `annal_fuzz::frame_decode`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| annal_fuzz::frame_decode(data));
