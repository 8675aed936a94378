//! Arbitrary bodies and query strings to the HTTP routes: never a 500. See `annal_fuzz::http_body`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| annal_fuzz::http_body(data));
