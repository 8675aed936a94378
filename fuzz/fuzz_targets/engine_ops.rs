//! Arbitrary engine operations checked against a BTreeMap model. See `annal_fuzz::engine_ops`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    annal_fuzz::engine_ops(data);
});
