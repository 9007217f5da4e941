//! Compiles the legacy scorer's C++ against Rivet's headers (found through rivet-cxx).

fn main() {
    let include = std::env::var_os("DEP_RIVET_CXX_INCLUDE").expect("rivet-cxx exports its include folders");
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .std("c++17")
        .file("../mlp_scorer.cpp")
        .warnings_into_errors(true)
        .flag("-Wall")
        .flag("-Wextra");
    for dir in std::env::split_paths(&include) {
        build.include(dir);
    }
    build.compile("legacy-mlp-scorer");
    println!("cargo:rerun-if-changed=../mlp_scorer.cpp");
    println!("cargo:rerun-if-changed=../mlp_scorer.h");
}
