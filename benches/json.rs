//! Parsing an add body: serde_json (what the server uses) against sonic-rs (SIMD), on
//! the same bytes, into the same shape: 1,000 items of 384 floats from the shared data,
//! as decimal JSON arrays and as base64 strings.
//!
//! `cargo bench -p annal-benches --bench json`

use std::time::Instant;

use annal_benches::fvecs;
use serde::Deserialize;

#[derive(Deserialize)]
struct Item {
    #[allow(dead_code)]
    id: String,
    vector: Vector,
}

#[derive(Deserialize)]
struct Body {
    items: Vec<Item>,
}

/// An array of numbers or base64 of little-endian float32, as the server takes it.
struct Vector(Vec<f32>);

impl<'de> Deserialize<'de> for Vector {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Vector;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a vector")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vector, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(x) = seq.next_element::<f32>()? {
                    out.push(x);
                }
                Ok(Vector(out))
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Vector, E> {
                use base64::Engine as _;
                let bytes = base64::engine::general_purpose::STANDARD.decode(text).map_err(E::custom)?;
                Ok(Vector(
                    bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
                ))
            }
        }
        d.deserialize_any(V)
    }
}

fn time(label: &str, body: &[u8], parse: impl Fn(&[u8]) -> usize) -> f64 {
    let rounds = 20;
    let floats = parse(body);
    let t = Instant::now();
    for _ in 0..rounds {
        assert_eq!(parse(body), floats);
    }
    let per_s = (rounds * 1000) as f64 / t.elapsed().as_secs_f64();
    println!("| {label} | {:.1} MiB | {per_s:>9.0} |", body.len() as f64 / (1 << 20) as f64);
    per_s
}

fn main() {
    use base64::Engine as _;
    let base = fvecs("base.fvecs");
    let arrays = serde_json::to_vec(&serde_json::json!({
        "items": (0..1000).map(|i| serde_json::json!({"id": format!("v{i}"), "vector": base[i]})).collect::<Vec<_>>()
    }))
    .expect("json");
    let encoded = serde_json::to_vec(&serde_json::json!({
        "items": (0..1000).map(|i| {
            let bytes: Vec<u8> = base[i].iter().flat_map(|x| x.to_le_bytes()).collect();
            serde_json::json!({"id": format!("v{i}"), "vector": base64::engine::general_purpose::STANDARD.encode(bytes)})
        }).collect::<Vec<_>>()
    }))
    .expect("json");
    let floats = |b: &Body| b.items.iter().map(|i| i.vector.0.len()).sum::<usize>();
    println!("| parser, vectors as | body | vectors/s |");
    println!("|---|---|---|");
    let a = time("serde_json, arrays", &arrays, |b| floats(&serde_json::from_slice(b).expect("serde_json")));
    let b = time("sonic-rs, arrays", &arrays, |b| floats(&sonic_rs::from_slice(b).expect("sonic-rs")));
    let c = time("serde_json, base64", &encoded, |b| floats(&serde_json::from_slice(b).expect("serde_json")));
    let d = time("sonic-rs, base64", &encoded, |b| floats(&sonic_rs::from_slice(b).expect("sonic-rs")));
    println!("sonic-rs / serde_json: arrays {:.2}x, base64 {:.2}x", b / a, d / c);
}
