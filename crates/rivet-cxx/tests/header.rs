//! include/rivet/bridge.h is exactly the header cxx-build generated from src/lib.rs in this
//! build (header drift fails here), and cxx-build is the same release as cxx, as cxx requires.
//! Regenerate with `RIVET_BLESS=1 cargo test -p rivet-cxx --test header`.

use std::path::Path;

#[test]
fn committed_bridge_header_matches_the_generated_one() {
    let generated =
        std::fs::read_to_string(env!("RIVET_CXX_GENERATED_HEADER")).expect("cxx-build wrote the header");
    let header = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../include/rivet/bridge.h");
    if std::env::var_os("RIVET_BLESS").is_some() {
        std::fs::write(&header, &generated).expect("write include/rivet/bridge.h");
    }
    let committed = std::fs::read_to_string(&header).unwrap_or_default();
    assert!(
        committed == generated,
        "include/rivet/bridge.h differs from what cxx-build generates from crates/rivet-cxx/src/lib.rs; \
         run `RIVET_BLESS=1 cargo test -p rivet-cxx --test header` and commit the header"
    );
    // It includes Rivet's own C++ half, as installed.
    assert!(committed.contains("#include \"rivet/scorer.h\""));
}

/// The versions Cargo.lock records for `name`.
fn locked_versions(lock: &str, name: &str) -> Vec<String> {
    let mut versions = Vec::new();
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line == format!("name = \"{name}\"") {
            if let Some(version) = lines.next().and_then(|l| l.strip_prefix("version = \"")) {
                versions.push(version.trim_end_matches('"').to_owned());
            }
        }
    }
    versions
}

#[test]
fn the_generator_is_the_same_release_as_cxx() {
    let lock = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.lock"))
        .expect("read Cargo.lock");
    let cxx = locked_versions(&lock, "cxx");
    assert_eq!(cxx.len(), 1, "one cxx in Cargo.lock: {cxx:?}");
    for generator in ["cxx-build", "cxxbridge-macro", "cxxbridge-flags"] {
        assert_eq!(locked_versions(&lock, generator), cxx, "{generator} must be the release of cxx");
    }
}
