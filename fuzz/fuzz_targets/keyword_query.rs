//! Arbitrary bytes as a keyword query. See `annal_fuzz::keyword_query`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| annal_fuzz::keyword_query(data));
