//! Arbitrary bytes as a metadata filter. See `annal_fuzz::filter_parse`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| annal_fuzz::filter_parse(data));
