//! Compiles `src/projection/vectors/hnsw_params.cpp`: FAISS's C API has no way to make
//! `SearchParametersHNSW` (a per-search `efSearch`), which a filtered graph search
//! needs. The shim is compiled against the headers of the FAISS that `faiss-sys`
//! builds and links, found through `cargo metadata`.

use std::path::PathBuf;
use std::process::Command;

/// `cargo metadata` for this package's platform: offline first (every package is
/// downloaded once any workspace build or `cargo fetch` ran), else online: a build of
/// one binary (`cargo run -p annal-server`) downloads only what that binary needs, and
/// metadata resolves the whole workspace (the fuzz crate's `arbitrary` too).
fn metadata(offline: bool) -> std::process::Output {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR");
    // Only the packages this target builds are resolved: without the filter, cargo
    // metadata wants every platform's (winapi, ...), which no Linux build downloads.
    let target = std::env::var("TARGET").expect("TARGET");
    let mut command = Command::new(cargo);
    command.args(["metadata", "--format-version", "1", "--filter-platform"]).arg(target);
    if offline {
        command.arg("--offline");
    }
    command
        .arg("--manifest-path")
        .arg(PathBuf::from(manifest).join("Cargo.toml"))
        .output()
        .expect("cargo metadata runs")
}

fn faiss_sources() -> PathBuf {
    let offline = metadata(true);
    let output = if offline.status.success() {
        offline
    } else {
        let online = metadata(false);
        assert!(
            online.status.success(),
            "cargo metadata --offline: {}\ncargo metadata: {}",
            String::from_utf8_lossy(&offline.stderr),
            String::from_utf8_lossy(&online.stderr)
        );
        online
    };
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).expect("cargo metadata is JSON");
    let packages = metadata["packages"].as_array().expect("packages");
    let faiss_sys = packages
        .iter()
        .find(|p| p["name"] == "faiss-sys")
        .and_then(|p| p["manifest_path"].as_str())
        .expect("faiss-sys among the dependencies");
    PathBuf::from(faiss_sys).parent().expect("faiss-sys directory").join("faiss")
}

fn main() {
    let shim = "src/projection/vectors/hnsw_params.cpp";
    println!("cargo:rerun-if-changed={shim}");
    println!("cargo:rerun-if-changed=build.rs");
    let faiss = faiss_sources();
    assert!(faiss.join("faiss/impl/HNSW.h").exists(), "no FAISS headers under {}", faiss.display());
    cc::Build::new()
        .cpp(true)
        .std("c++17")
        .opt_level(2)
        .include(&faiss)
        .file(shim)
        .compile("annal_faiss_shim");
}
