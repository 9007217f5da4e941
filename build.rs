//! Compiles the C++ half of the benchmarks (benches/cxx_call.cc) against Rivet's C++ API.

fn main() {
    let include = std::env::var_os("DEP_RIVET_CXX_INCLUDE").expect("rivet-cxx exports its include folders");
    let mut build = cc::Build::new();
    build.cpp(true).std("c++17").opt_level(2).file("benches/cxx_call.cc");
    for dir in std::env::split_paths(&include) {
        build.include(dir);
    }
    build.compile("rivet-bench-cxx");
    println!("cargo:rerun-if-changed=benches/cxx_call.cc");
}
