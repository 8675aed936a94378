//! Arbitrary section contents in a valid snapshot container. See `annal_fuzz::snapshot_sections`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| annal_fuzz::snapshot_sections(data));
