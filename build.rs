//! Copies the file-descriptor set of Envoy's protos that the envoy-types package ships
//! (`src/generated/types.bin`, not exported by its API) into OUT_DIR, so that
//! `config::envoy` can `include_bytes!` it for the proto3 JSON mapping of bootstrap
//! files. The package is found with `cargo metadata`, so nothing is copied into the repo.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=Cargo.lock");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    // Offline first (everything the build needs is already downloaded); `cargo
    // metadata` also wants the manifests of crates for other platforms, which a fresh
    // machine may not have fetched yet, so fall back to fetching them.
    let metadata = |offline: bool| {
        let mut c = Command::new(&cargo);
        c.args(["metadata", "--format-version", "1", "--manifest-path"])
            .arg(PathBuf::from(&manifest).join("Cargo.toml"));
        if offline {
            c.arg("--offline");
        }
        c.output().expect("run cargo metadata")
    };
    let mut output = metadata(true);
    if !output.status.success() {
        output = metadata(false);
    }
    if !output.status.success() {
        panic!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("cargo metadata output is JSON");
    let manifest_path = meta["packages"]
        .as_array()
        .and_then(|ps| {
            ps.iter()
                .find(|p| p["name"] == "envoy-types" && p["version"] == "0.7.7")
        })
        .and_then(|p| p["manifest_path"].as_str())
        .expect("envoy-types 0.7.7 in cargo metadata");
    let bin = PathBuf::from(manifest_path)
        .parent()
        .expect("package dir")
        .join("src/generated/types.bin");
    println!("cargo:rerun-if-changed={}", bin.display());
    std::fs::copy(&bin, out.join("envoy_types.bin"))
        .unwrap_or_else(|e| panic!("copy {}: {e}", bin.display()));
}
