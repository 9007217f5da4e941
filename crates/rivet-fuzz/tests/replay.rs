//! Replays every committed fuzz input (the minimized corpora in `fuzz/corpus/` and the crash
//! regressions in `fuzz/regressions/`) through the same entry points the fuzz targets call, on
//! the stable toolchain, so CI guards what fuzzing found without nightly or libFuzzer.

use std::path::{Path, PathBuf};

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> =
        entries.map(|e| e.expect("a directory entry").path()).filter(|p| p.is_file()).collect();
    files.sort();
    files
}

#[test]
fn every_corpus_and_regression_input_replays_cleanly() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut failures = Vec::new();
    for (name, target) in rivet_fuzz::TARGETS {
        let corpus = files(&root.join("corpus").join(name));
        assert!(!corpus.is_empty(), "fuzz/corpus/{name} is empty or missing");
        let regressions = files(&root.join("regressions").join(name));
        for file in corpus.iter().chain(&regressions) {
            let bytes = std::fs::read(file).expect("a corpus file");
            if let Err(payload) = rivet_core::panics::catch_quietly(|| target(&bytes)) {
                failures.push(format!("{}: {}", file.display(), rivet_core::panics::panic_text(&*payload)));
            }
        }
        eprintln!("{name}: {} corpus and {} regression inputs", corpus.len(), regressions.len());
    }
    assert!(failures.is_empty(), "{} input(s) fail:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn every_target_has_a_fuzz_target_file() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/fuzz_targets");
    for (name, _) in rivet_fuzz::TARGETS {
        let source = std::fs::read_to_string(root.join(format!("{name}.rs")))
            .unwrap_or_else(|e| panic!("fuzz/fuzz_targets/{name}.rs: {e}"));
        assert!(
            source.contains(&format!("rivet_fuzz::{name}(")),
            "fuzz/fuzz_targets/{name}.rs calls rivet_fuzz::{name}"
        );
    }
}
