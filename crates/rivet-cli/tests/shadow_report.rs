//! `rivet shadow report`: a capture directory (records written as a shadow writes them, with
//! known figures) summarised as tables, as JSON and as a histogram; bad directories refused.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rivet::shadow::{CaptureRecord, OutputComparison, ShadowStats};

fn rivet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rivet")).args(args).output().unwrap()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rivet-shadow-report-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn output(name: &str, max_abs_diff: f64, outside: u64, argmax: Option<f64>) -> OutputComparison {
    OutputComparison {
        name: name.into(),
        max_abs_diff,
        max_rel_diff: max_abs_diff * 10.0,
        outside,
        argmax_mismatch: argmax,
        mismatch: None,
    }
}

/// Three captures of two outputs, and the shadow's counts.
fn captures(dir: &Path) {
    let records = [
        (0, vec![output("logits", 2e-3, 4, Some(0.25)), output("embedding", 1e-6, 0, None)]),
        (1, vec![output("logits", 5e-2, 12, Some(0.5)), output("embedding", 3e-4, 2, None)]),
        (2, vec![output("logits", 1e-4, 1, Some(0.0)), output("embedding", 2e-6, 0, None)]),
    ];
    for (seq, outputs) in records {
        let folder = dir.join(format!("{seq:08}"));
        std::fs::create_dir_all(&folder).unwrap();
        let record = CaptureRecord {
            seq,
            time_unix_ms: 1_700_000_000_000 + seq * 1000,
            request_id: (seq == 1).then(|| "req-41".to_string()),
            outputs,
            missing: vec![],
        };
        std::fs::write(folder.join("record.json"), serde_json::to_string(&record).unwrap()).unwrap();
    }
    let stats = ShadowStats {
        requests: 120,
        skipped: 10,
        dropped: 5,
        compared: 105,
        matched: 102,
        diverged: 3,
        captured: 3,
        ..ShadowStats::default()
    };
    std::fs::write(dir.join("stats.json"), serde_json::to_string(&stats).unwrap()).unwrap();
}

#[test]
fn a_capture_directory_is_summarised_as_tables_json_and_a_histogram() {
    let dir = scratch("ok");
    captures(&dir);
    let d = dir.to_str().unwrap();
    let out = rivet(&["shadow", "report", d, "--top", "2"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let expected = format!(
        "{d}: 3 captured request(s)
shadow: 120 requests; 105 compared: 102 matched, 3 diverged; 0 candidate errors, 5 dropped, 10 not sampled
latency p50/p99: primary 0.000/0.000 ms, candidate 0.000/0.000 ms
┌───────────┬──────────┬──────────────────┬───────────────────┬───────────────┬──────────────────┬───────────────────────┐
│ output    ┆ diverged ┆ worst max |diff| ┆ median max |diff| ┆ worst max rel ┆ elements outside ┆ argmax differs (mean) │
╞═══════════╪══════════╪══════════════════╪═══════════════════╪═══════════════╪══════════════════╪═══════════════════════╡
│ logits    ┆ 3        ┆ 5.000e-2         ┆ 2.000e-3          ┆ 5.000e-1      ┆ 17               ┆ 25.0%                 │
│ embedding ┆ 1        ┆ 3.000e-4         ┆ 2.000e-6          ┆ 3.000e-3      ┆ 2                ┆ –                     │
└───────────┴──────────┴──────────────────┴───────────────────┴───────────────┴──────────────────┴───────────────────────┘
worst 2 request(s):
┌──────────┬────────────┬────────┬────────────┬─────────┬────────────────┐
│ capture  ┆ request id ┆ output ┆ max |diff| ┆ outside ┆ argmax differs │
╞══════════╪════════════╪════════╪════════════╪═════════╪════════════════╡
│ 00000001 ┆ req-41     ┆ logits ┆ 5.000e-2   ┆ 12      ┆ 50.0%          │
│ 00000000 ┆ –          ┆ logits ┆ 2.000e-3   ┆ 4       ┆ 25.0%          │
└──────────┴────────────┴────────┴────────────┴─────────┴────────────────┘
"
    );
    assert_eq!(text, expected);

    let out = rivet(&["shadow", "report", d, "--json", "--top", "1"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["captures"], 3);
    assert_eq!(json["stats"]["compared"], 105);
    assert_eq!(json["outputs"][1]["name"], "embedding");
    assert_eq!(json["outputs"][1]["elements_outside"], 2);
    assert_eq!(json["worst"].as_array().unwrap().len(), 1);
    assert_eq!(json["worst"][0]["request_id"], "req-41");

    for plot in ["hist.svg", "hist.png"] {
        let path = dir.join(plot);
        let out = rivet(&["shadow", "report", d, "--plot", path.to_str().unwrap()]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let bytes = std::fs::read(&path).unwrap();
        if plot.ends_with(".svg") {
            let svg = String::from_utf8(bytes).unwrap();
            assert!(svg.contains("Shadow captures") && svg.contains("logits") && svg.contains("embedding"));
        } else {
            assert_eq!(&bytes[..4], b"\x89PNG");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_capture_directories_are_refused_by_name() {
    let dir = scratch("bad");
    let missing = dir.join("nowhere");
    let out = rivet(&["shadow", "report", missing.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}: cannot read the capture directory", missing.display())),
        "{stderr}"
    );

    std::fs::create_dir_all(dir.join("00000000")).unwrap();
    std::fs::write(dir.join("00000000/record.json"), "{ not json").unwrap();
    let out = rivet(&["shadow", "report", dir.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}: not a capture record", dir.join("00000000/record.json").display())),
        "{stderr}"
    );

    let out = rivet(&["shadow", "report", dir.to_str().unwrap(), "--plot", "hist.pdf"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("expected a file name ending in .svg or .png, got \"hist.pdf\""), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}
