//! Tells the binary which Cargo profile built it (`debug` for dev and test, `release` for
//! release and bench), which `rivet bench` reports: the dev profile compiles this crate as
//! release does, so the compiler's own settings cannot tell the two apart.

fn main() {
    let profile = std::env::var("PROFILE").unwrap_or_else(|_| "unknown".into());
    println!("cargo:rustc-env=RIVET_BUILD_PROFILE={profile}");
    println!("cargo:rerun-if-changed=build.rs");
}
