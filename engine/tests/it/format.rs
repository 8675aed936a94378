//! The stored bytes of format version 1, pinned: a change to the frame, the rkyv
//! features or an event layout breaks these tests instead of old logs.

use annal_engine::event::*;

fn golden_event() -> Event {
    Event {
        stamp: Stamp { time_ms: 1_790_000_000_000, actor: "alice".into() },
        body: EventBody::VectorsUpserted(VectorsUpserted {
            index: "docs".into(),
            items: vec![VectorItem {
                id: "doc-1".into(),
                vector: vec![0.5, -1.0, 2.0],
                metadata: Some(r#"{"t":1}"#.into()),
                partition: None,
            }],
        }),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect()
}

// Generated once by `encode` at format version 1; never regenerate it to make a test pass.
const GOLDEN: &str = "01030000580000002f83fad50000003f000080bf00000040646f632d31ffffffecffffff03000000010000007b2274223a317dff00000000000000000000000000000000006c50c4a0010000616c696365ffffff646f6373ffffffffbcffffff01000000";

#[test]
fn a_version_1_frame_decodes_from_its_pinned_bytes() {
    assert_eq!(decode(1, &unhex(GOLDEN)).unwrap(), golden_event());
}

#[test]
fn encoding_produces_the_pinned_version_1_bytes() {
    assert_eq!(hex(&encode(&golden_event()).unwrap()), GOLDEN);
}

#[test]
fn a_frame_of_a_later_version_is_refused_by_name() {
    let mut bytes = unhex(GOLDEN);
    bytes[0] = 2;
    let err = decode(8, &bytes).unwrap_err();
    assert_eq!(err.to_string(), "event 8: frame version 2 is not supported (this build reads 1)");
}
