//! Arbitrary payloads of every kind behind a valid header and CRC. See `annal_fuzz::payload_decode`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| annal_fuzz::payload_decode(data));
