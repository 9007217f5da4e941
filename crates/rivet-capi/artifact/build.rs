fn main() {
    // A stable soname, so consumers record librivet.so.0 and minor releases can replace it.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,librivet.so.0");
    // rustc exports the Rust `#[no_mangle]` symbols (the C ABI and cxx's Rust-side shims) and
    // hides the rest; this script adds the C++ API (rivet::*) and cxx's C++ runtime
    // (rust::cxxbridge1::*, with the type info C++ needs to catch rust::Error). The linker
    // merges it with rustc's own script.
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("cxx-exports.map");
    println!("cargo:rustc-cdylib-link-arg=-Wl,--version-script={}", script.display());
    println!("cargo:rerun-if-changed=cxx-exports.map");
}
