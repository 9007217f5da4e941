//! Generates the bridge's C++ (cxx-build) and compiles it with Rivet's own C++ (`src/scorer.cc`).

use std::path::PathBuf;

fn main() {
    let manifest =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    // The public headers (rivet/scorer.h, rivet/cxx.hpp and the committed copy of the generated
    // rivet/bridge.h) live in the workspace's include/, where `make install` takes them from.
    let include = manifest.join("../../include");
    cxx_build::bridge("src/lib.rs")
        .file("src/scorer.cc")
        .include(&include)
        .std("c++17")
        .flag_if_supported("-Wall")
        .flag_if_supported("-Wextra")
        .compile("rivet-cxx");
    for path in ["src/lib.rs", "src/scorer.cc", "../../include/rivet/scorer.h", "../../include/rivet/cxx.hpp"]
    {
        println!("cargo:rerun-if-changed={path}");
    }
    let generated = out.join("cxxbridge/include");
    // For the drift test: the header cxx-build generated from src/lib.rs.
    println!(
        "cargo:rustc-env=RIVET_CXX_GENERATED_HEADER={}",
        generated.join("rivet-cxx/src/lib.rs.h").display()
    );
    // For crates compiling C++ against the API (a scorer packaged as a backend library):
    // rust/cxx.h is under the first folder, rivet/*.h under the second.
    println!("cargo:include={}", std::env::join_paths([generated, include]).unwrap().to_string_lossy());
}
