//! include/rivet.h is exactly what cbindgen generates from this crate: header drift fails here.
//! Regenerate with `RIVET_BLESS=1 cargo test -p rivet-capi --test header`.

use std::path::Path;

#[test]
fn committed_header_matches_the_generated_one() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let bindings = cbindgen::Builder::new()
        .with_crate(crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header");
    let mut generated = Vec::new();
    bindings.write(&mut generated);
    let generated = String::from_utf8(generated).expect("UTF-8 header");
    let header = crate_dir.join("../../include/rivet.h");
    if std::env::var_os("RIVET_BLESS").is_some() {
        std::fs::write(&header, &generated).expect("write include/rivet.h");
    }
    let committed = std::fs::read_to_string(&header).unwrap_or_default();
    assert!(
        committed == generated,
        "include/rivet.h differs from what crates/rivet-capi generates; run \
         `RIVET_BLESS=1 cargo test -p rivet-capi --test header` and commit the header"
    );
}
