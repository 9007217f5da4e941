//! Shadow mode in-process: a candidate beside the primary, on the MLP. Twins agree on every
//! request; a perturbed twin diverges on every request and its captures reproduce the figures;
//! a failing, a panicking and a blocked candidate never change the caller's answers.

mod common;

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};

use common::*;
use rivet::shadow::{CaptureOptions, CaptureRecord, Shadow, ShadowOptions};
use rivet::{Backend, Error, Model, Result, Signature, Tensor, TensorView};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rivet-shadow-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn ort_mlp() -> Arc<dyn Model> {
    load(&model_files("mlp").1, Backend::ORT)
}

/// Inputs for the MLP: the reference cases, then seeded values at batch 1 to 8.
fn requests() -> Vec<Tensor> {
    let mut all: Vec<Tensor> = cases("mlp").into_iter().map(|c| c.inputs[0].1.clone()).collect();
    let mut seed = 7u64;
    for batch in 1..=8 {
        let values: Vec<f32> = (0..batch * 16)
            .map(|_| {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((seed >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
            })
            .collect();
        all.push(Tensor::from_slice(&[batch, 16], &values).unwrap());
    }
    all
}

/// The MLP's ONNX twin with one weight changed (models/export.py writes it).
fn perturbed_mlp() -> PathBuf {
    models_dir().join("mlp/shadow/mlp_perturbed.onnx")
}

/// A candidate with the MLP's signature that does what `behave` says.
struct Stub {
    signature: Signature,
    behave: Box<dyn Fn() -> Result<Vec<Tensor>> + Send + Sync>,
}

impl Model for Stub {
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn backend(&self) -> Backend {
        Backend::new("stub").unwrap()
    }
    fn execute(&self, _inputs: &[TensorView<'_>]) -> Result<Vec<Tensor>> {
        (self.behave)()
    }
}

fn stub(behave: impl Fn() -> Result<Vec<Tensor>> + Send + Sync + 'static) -> Arc<dyn Model> {
    Arc::new(Stub { signature: ort_mlp().signature().clone(), behave: Box::new(behave) })
}

/// Runs every request through `shadow` and checks each answer is the primary's, bit for bit.
fn run_all(shadow: &Shadow, primary: &dyn Model) -> usize {
    let all = requests();
    for x in &all {
        let got = shadow.run_named(&[("features", x)]).unwrap();
        let want = primary.run_named(&[("features", x)]).unwrap();
        assert_eq!(got.by_name("logits").unwrap().as_bytes(), want.by_name("logits").unwrap().as_bytes());
    }
    shadow.flush();
    all.len()
}

#[test]
fn twins_agree_on_every_request() {
    let primary = ort_mlp();
    let candidate = load(&model_files("mlp").0, Backend::TCH);
    let shadow = Shadow::new(primary.clone(), candidate, ShadowOptions::default()).unwrap();
    assert_eq!(shadow.backend(), Backend::ORT);
    let n = run_all(&shadow, &*primary) as u64;
    let stats = shadow.stats();
    assert_eq!((stats.requests, stats.compared, stats.matched, stats.diverged), (n, n, n, 0), "{stats:?}");
    assert_eq!((stats.dropped, stats.candidate_errors, stats.skipped), (0, 0, 0));
    assert_eq!((stats.primary_latency.count, stats.candidate_latency.count), (n, n));
    assert!(
        stats.candidate_latency.p50_ms > 0.0
            && stats.candidate_latency.p99_ms >= stats.candidate_latency.p50_ms
    );
}

#[test]
fn a_perturbed_twin_diverges_and_each_capture_reproduces_its_figures() {
    let dir = scratch("perturbed");
    let primary = ort_mlp();
    let candidate = load(&perturbed_mlp(), Backend::CANDLE);
    let captures = dir.join("captures");
    let options = ShadowOptions { capture: Some(CaptureOptions::new(&captures)), ..ShadowOptions::default() };
    let shadow = Shadow::new(primary.clone(), candidate, options).unwrap();
    let n = run_all(&shadow, &*primary) as u64;
    let stats = shadow.stats();
    assert_eq!((stats.compared, stats.diverged, stats.matched, stats.captured), (n, n, 0, n), "{stats:?}");
    let mut folders: Vec<PathBuf> = std::fs::read_dir(&captures)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().parse::<u64>().is_ok())
        .collect();
    folders.sort();
    assert_eq!(folders.len() as u64, n);
    for folder in folders {
        let record: CaptureRecord =
            serde_json::from_str(&std::fs::read_to_string(folder.join("record.json")).unwrap()).unwrap();
        let input = rivet::npy::read_npy(&folder.join("input_0.npy")).unwrap();
        let kept_primary = rivet::npy::read_npy(&folder.join("primary.logits.npy")).unwrap();
        let kept_candidate = rivet::npy::read_npy(&folder.join("candidate.logits.npy")).unwrap();
        // The captured input gives the captured primary output again...
        let again = primary.run_named(&[("features", &input)]).unwrap();
        assert_eq!(again.by_name("logits").unwrap().as_bytes(), kept_primary.as_bytes());
        // ...and the captured outputs give the recorded figures.
        let figures = rivet::shadow::compare("logits".into(), &kept_primary, &kept_candidate, 1e-5, 1e-5);
        assert_eq!(record.outputs, vec![figures.clone()]);
        assert!(figures.outside > 0 && figures.max_abs_diff > 1e-5, "{figures:?}");
        assert!(figures.argmax_mismatch.is_some());
    }
    // The directory keeps the counts, last written when the shadow goes.
    drop(shadow);
    let kept: rivet::shadow::ShadowStats =
        serde_json::from_str(&std::fs::read_to_string(captures.join("stats.json")).unwrap()).unwrap();
    assert_eq!((kept.requests, kept.compared, kept.diverged, kept.captured), (n, n, n, n));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn captures_keep_the_newest_within_their_limits_and_drop_unfinished_ones() {
    let dir = scratch("limits");
    let captures = dir.join("captures");
    std::fs::create_dir_all(captures.join(".tmp-00000099")).unwrap();
    let primary = ort_mlp();
    let candidate = load(&perturbed_mlp(), Backend::CANDLE);
    let options = ShadowOptions {
        capture: Some(CaptureOptions { dir: captures.clone(), max_count: 3, max_bytes: u64::MAX }),
        ..ShadowOptions::default()
    };
    let shadow = Shadow::new(primary.clone(), candidate, options).unwrap();
    let n = run_all(&shadow, &*primary);
    let mut names: Vec<String> = std::fs::read_dir(&captures)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name != "stats.json")
        .collect();
    names.sort();
    let newest: Vec<String> = (n - 3..n).map(|i| format!("{i:08}")).collect();
    assert_eq!(names, newest);
    assert_eq!(shadow.stats().captured, n as u64);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_failing_or_panicking_candidate_is_counted_and_never_reaches_the_caller() {
    let primary = ort_mlp();
    for (what, candidate) in [
        ("error", stub(|| Err(Error::backend("stub", "the candidate fell over")))),
        ("panic", stub(|| panic!("the candidate panicked on purpose"))),
    ] {
        let shadow = Shadow::new(primary.clone(), candidate, ShadowOptions::default()).unwrap();
        let n = run_all(&shadow, &*primary) as u64;
        let stats = shadow.stats();
        assert_eq!((stats.candidate_errors, stats.compared, stats.requests), (n, 0, n), "{what}: {stats:?}");
        let last = stats.last_candidate_error.unwrap();
        let expected = if what == "error" {
            "stub: run failed: the candidate fell over"
        } else {
            "the candidate panicked: the candidate panicked on purpose"
        };
        assert_eq!(last, expected);
    }
}

#[test]
fn a_blocked_candidate_drops_comparisons_and_the_primary_never_waits() {
    let primary = ort_mlp();
    let gate = Arc::new((Mutex::new(false), Condvar::new()));
    let entered = Arc::new((Mutex::new(0u32), Condvar::new()));
    let reference = primary.clone();
    let candidate = {
        let (gate, entered) = (gate.clone(), entered.clone());
        stub(move || {
            *entered.0.lock().unwrap() += 1;
            entered.1.notify_all();
            let mut open = gate.0.lock().unwrap();
            while !*open {
                open = gate.1.wait(open).unwrap();
            }
            let x = Tensor::from_slice(&[1, 16], &[0f32; 16]).unwrap();
            Ok(reference.run_named(&[("features", &x)]).unwrap().into_tensors())
        })
    };
    let options = ShadowOptions { queue: 2, ..ShadowOptions::default() };
    let shadow = Shadow::new(primary.clone(), candidate, options).unwrap();
    let x = Tensor::from_slice(&[1, 16], &[0f32; 16]).unwrap();
    let want = primary.run_named(&[("features", &x)]).unwrap();
    // The first request reaches the candidate, which blocks; one more fills the queue of two.
    shadow.run_named(&[("features", &x)]).unwrap();
    let mut count = entered.0.lock().unwrap();
    while *count == 0 {
        count = entered.1.wait(count).unwrap();
    }
    drop(count);
    for _ in 0..9 {
        let got = shadow.run_named(&[("features", &x)]).unwrap();
        assert_eq!(got.by_name("logits").unwrap().as_bytes(), want.by_name("logits").unwrap().as_bytes());
    }
    let dropped_while_blocked = shadow.stats().dropped;
    // Opened before any check: a failed one must not leave the shadow's thread blocked.
    *gate.0.lock().unwrap() = true;
    gate.1.notify_all();
    assert_eq!(dropped_while_blocked, 8);
    shadow.flush();
    let stats = shadow.stats();
    assert_eq!((stats.requests, stats.compared, stats.matched, stats.dropped), (10, 2, 2, 8), "{stats:?}");
}

#[test]
fn sampling_compares_the_given_share() {
    let primary = ort_mlp();
    let candidate = load(&model_files("mlp").1, Backend::CANDLE);
    let options = ShadowOptions { sample: 0.25, ..ShadowOptions::default() };
    let shadow = Shadow::new(primary.clone(), candidate, options).unwrap();
    let x = Tensor::from_slice(&[2, 16], &[0.25f32; 32]).unwrap();
    for _ in 0..12 {
        shadow.run_named(&[("features", &x)]).unwrap();
    }
    shadow.flush();
    let stats = shadow.stats();
    assert_eq!((stats.requests, stats.compared, stats.skipped), (12, 3, 9), "{stats:?}");
}

#[test]
fn mismatched_signatures_and_bad_options_are_refused() {
    let primary = ort_mlp();
    let cnn = load(&model_files("cnn").1, Backend::ORT);
    let err = Shadow::new(primary.clone(), cnn, ShadowOptions::default()).err().unwrap();
    assert_eq!(
        err.to_string(),
        "invalid input: shadow: the candidate takes inputs [\"image\"] where the primary takes [\"features\"]"
    );
    let candidate = load(&model_files("mlp").1, Backend::CANDLE);
    let err = Shadow::new(
        primary.clone(),
        candidate.clone(),
        ShadowOptions { sample: 1.5, ..ShadowOptions::default() },
    )
    .err()
    .unwrap();
    assert_eq!(err.to_string(), "invalid option sample: 1.5 is not between 0 and 1");
    let err = Shadow::new(primary, candidate, ShadowOptions { queue: 0, ..ShadowOptions::default() })
        .err()
        .unwrap();
    assert_eq!(err.to_string(), "invalid option queue: must hold at least 1 request");
}
