//! No build step: this script exists so that the build-dependencies above (feature alignment
//! with the rest of the workspace, see Cargo.toml) are part of this crate's graph.
fn main() {}
