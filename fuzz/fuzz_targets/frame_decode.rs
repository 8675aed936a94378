//! Arbitrary bytes into the frame decoder: it must return an error or an event, never
//! panic, and whatever it accepts must survive another encode/decode unchanged.
#![no_main]

use annal_engine::event::{decode, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(event) = decode(0, data) {
        // Compare bytes, not events: a NaN component is not equal to itself.
        let once = encode(&event).expect("a decoded event re-encodes");
        let twice = encode(&decode(0, &once).expect("a re-encoded event decodes")).expect("re-encodes");
        assert_eq!(once, twice);
    }
});
