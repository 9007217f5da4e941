//! A missing, broken or mismatched backend library is a load error that says where Rivet looked
//! and what it found there. One test in its own binary: it sets process-wide variables.

use std::path::{Path, PathBuf};
use std::process::Command;

use rivet::{Backend, ErrorKind, LoadOptions};

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rivet-backend-library-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn pt() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/mlp/mlp.pt")
}

fn tch_error() -> String {
    let err = rivet::load(pt(), &LoadOptions::with_backend(Backend::TCH)).err().expect("tch must not load");
    assert_eq!(err.kind(), ErrorKind::ModelLoad, "{err}");
    err.to_string()
}

/// A shared library `librivet_NAME.so` in `dir` exporting Rivet's entry point with this
/// Rivet's version, the ABI key `key`, the layout fingerprint `layout` (C initializers) and the
/// constructor `create` (a C expression; the source may define it in `defs`).
fn plugin_library(dir: &Path, name: &str, key: &str, layout: &str, defs: &str, create: &str) -> PathBuf {
    let source = dir.join(format!("{name}.c"));
    std::fs::write(
        &source,
        format!(
            r#"#include <stdbool.h>
#include <stddef.h>
typedef struct {{ unsigned abi_version; const char *key; size_t key_len; size_t layout[8]; bool (*create)(void *); }} entry;
static const char KEY[] = {key:?};
{defs}
static entry ENTRY = {{{version}, KEY, sizeof KEY - 1, {{{layout}}}, {create}}};
const entry *rivet_backend_plugin_v1(void) {{ return &ENTRY; }}
"#,
            version = rivet::plugin::PLUGIN_ABI_VERSION,
        ),
    )
    .unwrap();
    let library = dir.join(format!("librivet_{name}.so"));
    let status = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&library)
        .arg(&source)
        .status()
        .expect("a C compiler (cc) builds the test library");
    assert!(status.success());
    library
}

/// A backend library with the right version and a foreign key, as one built by another
/// compiler would be.
fn foreign_plugin(dir: &Path) -> PathBuf {
    plugin_library(dir, "foreign", "rivet-core 0.0.1; rustc 1.0.0; x86_64-unknown-linux-gnu", "0", "", "NULL")
}

/// A backend library with this Rivet's version, key and layout whose constructor reports a
/// panic (returns false), as `export_backend_plugin!`'s does when making the backend panics.
fn panicking_plugin(dir: &Path) -> PathBuf {
    let layout: Vec<String> = rivet::plugin::layout_fingerprint().iter().map(|n| format!("{n}u")).collect();
    plugin_library(
        dir,
        "panicking",
        rivet::plugin::PLUGIN_ABI_KEY,
        &layout.join(", "),
        "static bool create(void *slot) { (void)slot; return false; }",
        "create",
    )
}

#[test]
fn missing_broken_and_mismatched_libraries_are_named() {
    let dir = scratch();
    // Not a shared library at all.
    let junk = dir.join("librivet_tch.so");
    std::fs::write(&junk, b"not an ELF file").unwrap();
    std::env::set_var("RIVET_TCH_LIBRARY", &junk);
    let text = tch_error();
    assert!(text
        .starts_with(&format!("tch: cannot load {}: cannot find a usable backend library", pt().display())));
    assert!(text.contains(&format!("{} (found, but it does not load: ", junk.display())), "{text}");
    // A shared library without Rivet's entry point.
    let capi = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/debug/librivet_affine.so");
    let other = dir.join("libother.so");
    let status =
        Command::new("cc").args(["-shared", "-fPIC", "-x", "c", "/dev/null", "-o"]).arg(&other).status();
    assert!(status.unwrap().success());
    std::env::set_var("RIVET_TCH_LIBRARY", &other);
    let text = tch_error();
    assert!(
        text.contains("(found, but it exports no rivet_backend_plugin_v1: not a Rivet backend library)"),
        "{text}"
    );
    // Built for another Rivet and compiler.
    std::env::set_var("RIVET_TCH_LIBRARY", foreign_plugin(&dir));
    let text = tch_error();
    assert!(text.contains("found, but it was built for \"rivet-core 0.0.1; rustc 1.0.0"), "{text}");
    assert!(
        text.contains(&format!("and this Rivet is \"{}\"; rebuild it", rivet::plugin::PLUGIN_ABI_KEY)),
        "{text}"
    );
    // A library whose backend panicked while being made.
    std::env::set_var("RIVET_TCH_LIBRARY", panicking_plugin(&dir));
    let text = tch_error();
    assert!(text.contains("librivet_panicking.so (found, but making its backend panicked)"), "{text}");
    // A library for another backend under this backend's name.
    if capi.is_file() {
        std::env::set_var("RIVET_TCH_LIBRARY", &capi);
        let text = tch_error();
        assert!(text.ends_with("librivet_tch.so holds the backend \"affine\", not \"tch\""), "{text}");
    }
    std::env::remove_var("RIVET_TCH_LIBRARY");
    std::fs::remove_dir_all(&dir).unwrap();
}
