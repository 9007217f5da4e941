//! `rivet serve` end to end: a model repository served by the real binary, driven by Triton's
//! own clients and perf_analyzer (serve/clients.py), then stopped by SIGTERM with a request in
//! flight; its JSON log read back. Needs the venv and perf_analyzer that ./bootstrap.sh installs.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// The queue delay of `mlp_batched` (the batching checks wait up to this long per batch).
const BATCH_DELAY_US: u64 = 5_000;
/// The queue delay of `slow`, long enough for SIGTERM to arrive while its request waits.
const SLOW_DELAY_US: u64 = 2_000_000;

/// A model folder `name` in `repo` holding links to `files` of models/, and `config`.
fn model(repo: &Path, name: &str, files: &[&str], config: &str) {
    let dir = repo.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    for file in files {
        let source = root().join("models").join(file);
        std::os::unix::fs::symlink(&source, dir.join(source.file_name().unwrap())).unwrap();
    }
    if !config.is_empty() {
        std::fs::write(dir.join("config.toml"), config).unwrap();
    }
}

fn repository() -> tempfile::TempDir {
    let repo = tempfile::tempdir().unwrap();
    let r = repo.path();
    model(r, "mlp", &["mlp/mlp.onnx"], "backend = \"ort\"\n");
    model(r, "cnn", &["cnn/cnn.onnx"], "");
    model(r, "encoder", &["encoder/encoder.onnx"], "backend = \"ort\"\ninstances = 2\n");
    model(r, "mlp_tch", &["mlp/mlp.pt", "mlp/mlp.spec.json"], "backend = \"tch\"\n");
    model(r, "cnn_candle", &["cnn/cnn.onnx"], "backend = \"candle\"\n");
    let batched = |delay: u64| {
        format!("backend = \"ort\"\nmax_batch_size = 8\n[dynamic_batching]\nmax_queue_delay_us = {delay}\n")
    };
    model(r, "mlp_batched", &["mlp/mlp.onnx"], &batched(BATCH_DELAY_US));
    model(r, "slow", &["mlp/mlp.onnx"], &batched(SLOW_DELAY_US));
    std::fs::create_dir_all(r.join("broken")).unwrap();
    std::fs::write(r.join("broken/model.onnx"), b"not a model").unwrap();
    repo
}

/// A running `rivet serve` and the addresses it printed.
struct Served {
    child: Child,
    http: String,
    grpc: String,
    metrics: String,
    lines: Vec<String>,
    stdout: BufReader<std::process::ChildStdout>,
    /// The server's log, one JSON object per line (`--log-format json`), as it is written.
    log: mpsc::Receiver<serde_json::Value>,
}

impl Served {
    /// The next log line for which `wanted` holds (lines before it are dropped). The server
    /// writes it when the event happens; the timeout only keeps a broken server from hanging
    /// the test.
    fn log_line(&self, what: &str, wanted: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        loop {
            match self.log.recv_timeout(Duration::from_secs(120)) {
                Ok(line) if wanted(&line) => return line,
                Ok(_) => {}
                Err(e) => panic!("no log line {what}: {e}"),
            }
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        // A failed check must not leave the server running.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(repo: &Path) -> Served {
    start_with(repo, &[])
}

/// `rivet serve` on `repo` with `extra` arguments.
fn start_with(repo: &Path, extra: &[&str]) -> Served {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rivet"))
        .args(["serve", "--model-repository"])
        .arg(repo)
        .args(extra)
        .args(["--host", "127.0.0.1", "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0"])
        .args(["--log-format", "json"])
        // Every request's access line, and the batcher's "queued" events.
        .env("RUST_LOG", "warn,rivet::access=info,rivet_server=debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (send, log) = mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("a log line that is not JSON ({e}): {line}"));
            if send.send(value).is_err() {
                break;
            }
        }
    });
    // From here on the guard stops the server whatever happens.
    let mut served = Served {
        child,
        http: String::new(),
        grpc: String::new(),
        metrics: String::new(),
        lines: Vec::new(),
        stdout,
        log,
    };
    loop {
        let mut line = String::new();
        let read = served.stdout.read_line(&mut line).unwrap();
        assert!(read > 0, "rivet serve exited early; it printed {:#?}", served.lines);
        let line = line.trim_end().to_owned();
        if let Some(rest) = line.strip_prefix("serving: ") {
            // serving: HTTP on A, gRPC on B, metrics on http://C/metrics
            let words: Vec<&str> = rest.split([' ', ',']).filter(|w| !w.is_empty()).collect();
            served.http = words[2].to_owned();
            served.grpc = words[5].to_owned();
            served.metrics = words[8].trim_start_matches("http://").trim_end_matches("/metrics").to_owned();
            served.lines.push(line);
            return served;
        }
        served.lines.push(line);
    }
}

/// One HTTP/1.1 exchange over a plain socket: (status, body).
fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

/// Runs `serve/SCRIPT` against `served` with `extra` arguments; every check it prints must pass,
/// and there must be at least `least` of them.
fn run_checks(served: &Served, script: &str, extra: &[std::ffi::OsString], least: usize) {
    let python = option_env!("RIVET_PYTHON").map_or_else(|| root().join(".venv/bin/python"), PathBuf::from);
    let out = Command::new(&python)
        .arg(root().join("crates/rivet-cli/tests/serve").join(script))
        .args(["--http", &served.http, "--grpc", &served.grpc, "--metrics", &served.metrics])
        .arg("--models")
        .arg(root().join("models"))
        .args(extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut checks = 0;
    for line in stdout.lines() {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        if value.get("check").is_some() {
            checks += 1;
            println!(
                "{}: {} ({})",
                if value["ok"] == true { "ok" } else { "FAILED" },
                value["check"],
                value["detail"]
            );
        }
    }
    let failed: Vec<&str> = stdout.lines().filter(|l| l.contains("\"ok\": false")).collect();
    assert!(
        out.status.success() && failed.is_empty() && checks >= least,
        "{checks} checks, failed: {failed:#?}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn triton_clients_and_perf_analyzer_against_rivet_serve_then_sigterm_finishes_in_flight_work() {
    let repo = repository();
    let mut served = start(repo.path());
    let status: Vec<&str> = served.lines.iter().map(String::as_str).collect();
    assert!(status.iter().any(|l| l.starts_with("model mlp (version 1): ready on ort")), "{status:#?}");
    assert!(
        status.iter().any(|l| l.starts_with("model cnn_candle (version 1): ready on candle")),
        "{status:#?}"
    );
    assert!(status.iter().any(|l| l.starts_with("model mlp_tch (version 1): ready on tch")), "{status:#?}");
    assert!(
        status.iter().any(
            |l| l.starts_with("model broken (version 1): NOT READY: ") && l.contains("broken/model.onnx")
        ),
        "{status:#?}"
    );

    // Plain HTTP: errors are JSON with the status the protocol gives them.
    let (code, body) = http(&served.http, "POST", "/v2/models/mlp/infer", "{\"inputs\": [");
    assert_eq!(code, 400, "{body}");
    assert!(body.starts_with("{\"error\":\"request JSON: EOF while parsing"), "{body}");
    let (code, body) = http(&served.http, "GET", "/v2/models/nope", "");
    assert_eq!((code, body.as_str()), (404, "{\"error\":\"model \\\"nope\\\" is not in the repository\"}"));
    let (code, body) = http(&served.http, "GET", "/v2/models/mlp/versions/2/ready", "");
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("has no version \\\"2\\\" (served: \\\"1\\\")"), "{body}");
    let (code, _) = http(&served.http, "GET", "/v2/models/mlp/versions/1/ready", "");
    assert_eq!(code, 200);
    let wrong = |datatype: &str, data: &str| {
        format!("{{\"inputs\": [{{\"name\": \"features\", \"shape\": [1, 2], \"datatype\": \"{datatype}\", \"data\": {data}}}]}}")
    };
    let (code, body) = http(&served.http, "POST", "/v2/models/mlp/infer", &wrong("FP64", "[1, 2]"));
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("input \\\"features\\\": expected dtype f32, got f64"), "{body}");
    let (code, body) = http(&served.http, "POST", "/v2/models/mlp/infer", &wrong("STRING", "[1, 2]"));
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("datatype \\\"STRING\\\" is not supported"), "{body}");
    let (code, body) = http(&served.http, "POST", "/v2/models/mlp/infer", &wrong("FP32", "[1, 2, 3]"));
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("shape [1, 2] needs 2 elements, data has more than 2"), "{body}");
    // Binary data: a header length past the body, and a byte size that does not fit the shape.
    let binary = |header_length: usize, size: usize| -> (u16, String) {
        let json = format!(
            "{{\"inputs\": [{{\"name\": \"features\", \"shape\": [1, 16], \"datatype\": \"FP32\", \
             \"parameters\": {{\"binary_data_size\": {size}}}}}]}}"
        );
        let mut stream = TcpStream::connect(&served.http).unwrap();
        let body_len = json.len() + size;
        write!(
            stream,
            "POST /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\nInference-Header-Content-Length: {header_length}\r\n\
             Content-Length: {body_len}\r\nConnection: close\r\n\r\n{json}"
        )
        .unwrap();
        stream.write_all(&vec![0u8; size]).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        (status, response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default())
    };
    let (code, body) = binary(100_000, 64);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("Inference-Header-Content-Length is 100000, but the body has only"), "{body}");
    let header = "{\"inputs\": [{\"name\": \"features\", \"shape\": [1, 16], \"datatype\": \"FP32\", \"parameters\": {\"binary_data_size\": 60}}]}".len();
    let (code, body) = binary(header, 60);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("input \\\"features\\\": FP32 [1, 16] needs 64 bytes, got 60"), "{body}");
    // An oversized request is refused from its Content-Length, before its body is read.
    let mut stream = TcpStream::connect(&served.http).unwrap();
    write!(stream, "POST /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n", 1u64 << 40)
        .unwrap();
    let mut response = vec![0u8; 4096];
    let n = stream.read(&mut response).unwrap();
    let response = String::from_utf8_lossy(&response[..n]);
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(
        response.contains("the request is larger than the server's limit of 268435456 bytes"),
        "{response}"
    );

    let perf_analyzer = option_env!("RIVET_PERF_ANALYZER")
        .map_or_else(|| root().join(".venv/perf_analyzer/perf_analyzer"), PathBuf::from);
    assert!(perf_analyzer.exists(), "{} is missing: run ./bootstrap.sh", perf_analyzer.display());
    let extra = [
        "--perf-analyzer".into(),
        perf_analyzer.into_os_string(),
        "--batch-delay-us".into(),
        BATCH_DELAY_US.to_string().into(),
    ];
    run_checks(&served, "clients.py", &extra, 60);

    // SIGTERM while a request waits in `slow`'s queue: it is still answered, then the server exits 0.
    let features = rivet::npy::read_npy(&root().join("models/mlp/cases/b1/input.features.npy")).unwrap();
    let expected = rivet::npy::read_npy(&root().join("models/mlp/cases/b1/output.logits.npy")).unwrap();
    let body = serde_json::json!({"inputs": [{
        "name": "features", "shape": features.shape(), "datatype": "FP32",
        "data": features.as_slice::<f32>().unwrap(),
    }]})
    .to_string();
    let addr = served.http.clone();
    let in_flight = std::thread::spawn(move || http(&addr, "POST", "/v2/models/slow/infer", &body));
    // The server logs the request once it is in slow's queue (where it waits 2 s for more).
    served.log_line("for the queued request", |l| {
        l["fields"]["message"] == "queued" && l["span"]["model"] == "slow"
    });
    let killed = Command::new("kill").args(["-TERM", &served.child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let (code, body) = in_flight.join().unwrap();
    assert_eq!(code, 200, "{body}");
    let response: serde_json::Value = serde_json::from_str(&body).unwrap();
    let got: Vec<f32> = serde_json::from_value(response["outputs"][0]["data"].clone()).unwrap();
    let want = expected.as_slice::<f32>().unwrap();
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() <= 1e-4 + 1e-4 * w.abs(), "{got:?} vs {want:?}");
    }
    let exit = served.child.wait().unwrap();
    let mut rest = String::new();
    served.stdout.read_to_string(&mut rest).unwrap();
    assert!(exit.success(), "{exit:?}: {rest}");
    assert!(rest.contains("shut down: every request in flight was answered"), "{rest}");
    assert!(TcpStream::connect(&served.http).is_err(), "still accepting after shutdown");
}

#[test]
fn every_request_gets_a_json_access_line_in_its_span() {
    let repo = tempfile::tempdir().unwrap();
    model(repo.path(), "mlp", &["mlp/mlp.onnx"], "backend = \"candle\"\n");
    let served = start(repo.path());
    let x: Vec<f32> = (0..16).map(|i| i as f32 / 16.0).collect();
    let body = serde_json::json!({"id": "r-42", "inputs": [{
        "name": "features", "shape": [1, 16], "datatype": "FP32", "data": x,
    }]})
    .to_string();
    let (code, answer) = http(&served.http, "POST", "/v2/models/mlp/infer", &body);
    assert_eq!(code, 200, "{answer}");
    let line = served.log_line("for r-42", |l| l["fields"]["message"] == "request");
    assert_eq!(line["level"], "INFO", "{line}");
    assert_eq!(line["target"], "rivet::access", "{line}");
    assert_eq!(line["span"]["name"], "request", "{line}");
    assert_eq!(line["span"]["id"], "r-42", "{line}");
    assert_eq!(line["span"]["model"], "mlp", "{line}");
    assert_eq!(line["span"]["version"], "1", "{line}");
    assert_eq!(line["span"]["protocol"], "http", "{line}");
    assert_eq!(line["fields"]["status"], "ok", "{line}");
    let us = |k: &str| line["fields"][k].as_u64().unwrap_or_else(|| panic!("{k} in {line}"));
    assert!(us("queue_us") + us("compute_us") <= us("total_us"), "{line}");

    // A request the model refuses (8 features where it takes 16): its status names why, and it
    // never reached the queue.
    let bad = serde_json::json!({"id": "r-43", "inputs": [{
        "name": "features", "shape": [1, 8], "datatype": "FP32", "data": &x[..8],
    }]})
    .to_string();
    let (code, _) = http(&served.http, "POST", "/v2/models/mlp/infer", &bad);
    assert_eq!(code, 400);
    let line = served.log_line("for r-43", |l| l["span"]["id"] == "r-43");
    assert_eq!(line["fields"]["status"], "bad_request", "{line}");
    assert!(line["fields"].get("queue_us").is_none_or(|v| v.is_null()), "{line}");
}

#[test]
fn shadows_compare_every_request_through_triton_clients_and_never_touch_the_answers() {
    let repo = tempfile::tempdir().unwrap();
    let captures = tempfile::tempdir().unwrap();
    let r = repo.path();
    let shadowed = |shadow: &str, extra: &str| {
        format!("backend = \"ort\"\n{extra}[shadow]\nmodel = \"{shadow}\"\natol = 1e-5\nrtol = 0.0\n")
    };
    let batched = |backend: &str| {
        format!(
            "backend = \"{backend}\"\nmax_batch_size = 8\n[dynamic_batching]\nmax_queue_delay_us = 5000\n"
        )
    };
    model(r, "mlp", &["mlp/mlp.onnx"], &shadowed("mlp_tch", ""));
    model(r, "mlp_tch", &["mlp/mlp.pt", "mlp/mlp.spec.json"], "backend = \"tch\"\n");
    model(
        r,
        "mlp_main",
        &["mlp/mlp.onnx"],
        &format!("{}capture_dir = \"{}\"\n", shadowed("mlp_perturbed", ""), captures.path().display()),
    );
    model(r, "mlp_perturbed", &["mlp/shadow/mlp_perturbed.onnx"], "backend = \"ort\"\n");
    model(r, "mlp_err", &["mlp/mlp.onnx"], &shadowed("mlp_b1", ""));
    model(r, "mlp_b1", &["mlp/mlp.onnx"], "backend = \"ort\"\nmax_batch_size = 1\n");
    model(r, "mlp_fast", &["mlp/mlp.onnx"], &format!("{}queue = 1\n", shadowed("mlp_slow", "")));
    model(
        r,
        "mlp_slow",
        &["mlp/mlp.onnx"],
        "backend = \"ort\"\nmax_batch_size = 8\n[dynamic_batching]\nmax_queue_delay_us = 10000000\n",
    );
    let primary_batched =
        format!("{}[shadow]\nmodel = \"mlp_tch_batched\"\natol = 1e-5\nrtol = 0.0\n", batched("ort"));
    model(r, "mlp_batched", &["mlp/mlp.onnx"], &primary_batched);
    model(r, "mlp_tch_batched", &["mlp/mlp.pt", "mlp/mlp.spec.json"], &batched("tch"));
    // Shadows that cannot be attached keep their primary from serving, saying why.
    model(r, "orphan", &["mlp/mlp.onnx"], &shadowed("nope", ""));
    model(r, "mismatch", &["mlp/mlp.onnx"], &shadowed("cnn", ""));
    model(r, "cnn", &["cnn/cnn.onnx"], "backend = \"ort\"\n");

    let served = start(repo.path());
    let status: Vec<&str> = served.lines.iter().map(String::as_str).collect();
    assert!(
        status
            .iter()
            .any(|l| l.starts_with("model mlp (version 1): ready on ort")
                && l.ends_with(", shadowed by mlp_tch")),
        "{status:#?}"
    );
    let not_ready = |name: &str, reason: &str| {
        status
            .iter()
            .any(|l| l.starts_with(&format!("model {name} (version 1): NOT READY: ")) && l.contains(reason))
    };
    assert!(not_ready("orphan", "[shadow] model \"nope\" is not in the repository"), "{status:#?}");
    assert!(
        not_ready("mismatch", "[shadow] model \"cnn\": the candidate takes inputs [\"image\"] where the primary takes [\"features\"]"),
        "{status:#?}"
    );
    let extra = ["--captures".into(), captures.path().as_os_str().to_owned()];
    run_checks(&served, "shadow.py", &extra, 16);
}

/// A copy of models/`file` at `repo`/`name`/model.onnx (a copy, not a link: the tests change it).
fn copied(repo: &Path, name: &str, file: &str, config: &str) {
    let dir = repo.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(root().join("models").join(file), dir.join("model.onnx")).unwrap();
    std::fs::write(dir.join("config.toml"), config).unwrap();
}

#[test]
fn models_load_unload_and_reload_while_serving_and_versions_are_addressed() {
    let perf_analyzer = option_env!("RIVET_PERF_ANALYZER")
        .map_or_else(|| root().join(".venv/perf_analyzer/perf_analyzer"), PathBuf::from);

    // Explicit mode: only mlp loads at start; the rest by request.
    let repo = tempfile::tempdir().unwrap();
    let r = repo.path();
    model(r, "mlp", &["mlp/mlp.onnx"], "backend = \"ort\"\n");
    model(r, "cnn", &["cnn/cnn.onnx"], "backend = \"ort\"\n");
    model(r, "versioned", &[], "backend = \"ort\"\nversion_policy = \"all\"\n");
    model(&r.join("versioned"), "1", &["mlp/mlp.onnx"], "");
    model(&r.join("versioned"), "2", &["mlp/shadow/mlp_perturbed.onnx"], "");
    copied(r, "swap", "mlp/mlp.onnx", "backend = \"ort\"\n");
    model(r, "front", &["mlp/mlp.onnx"], "backend = \"ort\"\n[shadow]\nmodel = \"twin\"\natol = 1e-4\n");
    model(r, "twin", &["mlp/mlp.onnx"], "backend = \"candle\"\n");
    copied(
        r,
        "queued",
        "mlp/mlp.onnx",
        "backend = \"ort\"\nmax_batch_size = 8\n[dynamic_batching]\nmax_queue_delay_us = 30000000\n",
    );
    let served = start_with(
        r,
        &[
            "--model-control-mode",
            "explicit",
            "--load-model",
            "mlp",
            "--load-model",
            "queued",
            "--load-model",
            "front",
        ],
    );
    assert!(served.lines.iter().any(|l| l == "model cnn: not loaded"), "{:#?}", served.lines);
    let extra = [
        "--repository".into(),
        r.as_os_str().to_owned(),
        "--perf-analyzer".into(),
        perf_analyzer.clone().into_os_string(),
        "--phase".into(),
        "explicit".into(),
    ];
    run_checks(&served, "control.py", &extra, 22);

    // Unload while requests wait in the queue (its 30 s delay holds them): each is answered,
    // and a request after the unload gets 503.
    let features = rivet::npy::read_npy(&root().join("models/mlp/cases/b1/input.features.npy")).unwrap();
    let body = serde_json::json!({"inputs": [{
        "name": "features", "shape": features.shape(), "datatype": "FP32",
        "data": features.as_slice::<f32>().unwrap(),
    }]})
    .to_string();
    let waiting: Vec<_> = (0..3)
        .map(|_| {
            let (addr, body) = (served.http.clone(), body.clone());
            std::thread::spawn(move || http(&addr, "POST", "/v2/models/queued/infer", &body))
        })
        .collect();
    for _ in 0..3 {
        served.log_line("for a queued request", |l| {
            l["fields"]["message"] == "queued" && l["span"]["model"] == "queued"
        });
    }
    let (code, answer) = http(&served.http, "POST", "/v2/repository/models/queued/unload", "");
    assert_eq!(code, 200, "{answer}");
    let (code, answer) = http(&served.http, "POST", "/v2/models/queued/infer", &body);
    assert_eq!(
        (code, answer.as_str()),
        (503, "{\"error\":\"model \\\"queued\\\" is unavailable: unloaded\"}")
    );
    let expected = rivet::npy::read_npy(&root().join("models/mlp/cases/b1/output.logits.npy")).unwrap();
    for request in waiting {
        let (code, answer) = request.join().unwrap();
        assert_eq!(code, 200, "{answer}");
        let response: serde_json::Value = serde_json::from_str(&answer).unwrap();
        let got: Vec<f32> = serde_json::from_value(response["outputs"][0]["data"].clone()).unwrap();
        for (g, w) in got.iter().zip(expected.as_slice::<f32>().unwrap()) {
            assert!((g - w).abs() <= 1e-4 + 1e-4 * w.abs(), "{got:?}");
        }
    }
    // Mode none refuses load and unload, saying how to allow them.
    let plain = tempfile::tempdir().unwrap();
    model(plain.path(), "mlp", &["mlp/mlp.onnx"], "backend = \"ort\"\n");
    let fixed = start(plain.path());
    let (code, answer) = http(&fixed.http, "POST", "/v2/repository/models/mlp/unload", "");
    assert_eq!(code, 400, "{answer}");
    assert!(
        answer
            .contains("the model control mode is none; start rivet serve with --model-control-mode explicit"),
        "{answer}"
    );
    let (code, answer) = http(&fixed.http, "POST", "/v2/repository/index", "{\"ready\": true}");
    assert_eq!(
        (code, answer.as_str()),
        (200, "[{\"name\":\"mlp\",\"reason\":\"\",\"state\":\"READY\",\"version\":\"1\"}]")
    );

    // Poll mode: files replaced under a running perf_analyzer.
    let repo = tempfile::tempdir().unwrap();
    let models = repo.path().join("repository");
    copied(&models, "live", "mlp/mlp.onnx", "backend = \"ort\"\n");
    let served = start_with(&models, &["--model-control-mode", "poll", "--repository-poll-secs", "0.2"]);
    let extra = [
        "--repository".into(),
        models.as_os_str().to_owned(),
        "--perf-analyzer".into(),
        perf_analyzer.into_os_string(),
        "--phase".into(),
        "poll".into(),
    ];
    run_checks(&served, "control.py", &extra, 7);
}

#[test]
fn raw_rows_through_the_pipeline_answer_as_rivet_predict() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let rows = w.join("rows.csv");
    let python = option_env!("RIVET_PYTHON").map_or_else(|| root().join(".venv/bin/python"), PathBuf::from);
    let generated = Command::new(&python)
        .arg(root().join("models/tabular/generate.py"))
        .args(["--rows", "200", "--seed", "11", "--out"])
        .arg(&rows)
        .status()
        .unwrap();
    assert!(generated.success());
    let predictions = w.join("predictions.csv");
    let predicted = Command::new(env!("CARGO_BIN_EXE_rivet"))
        .arg("predict")
        .arg("--model")
        .arg(root().join("models/tabular/tabular.onnx"))
        .arg("--data")
        .arg(&rows)
        .arg("--out")
        .arg(&predictions)
        .args(["--backend", "ort"])
        .output()
        .unwrap();
    assert!(predicted.status.success(), "{}", String::from_utf8_lossy(&predicted.stderr));

    // The model with its pipeline beside it, batched; `rivet serve` hands the repository to
    // rivet-tabular, which loads pipelines.
    let repo = w.join("repository");
    model(
        &repo,
        "churn",
        &["tabular/tabular.onnx", "tabular/tabular.pipeline.json"],
        "backend = \"ort\"\nmax_batch_size = 256\n[dynamic_batching]\npolicy = \"idle_first\"\n",
    );
    let served = start(&repo);
    assert!(
        served.lines.iter().any(|l| l.starts_with("model churn (version 1): ready on ort")),
        "{:#?}",
        served.lines
    );
    let extra =
        ["--rows".into(), rows.into_os_string(), "--predictions".into(), predictions.into_os_string()];
    run_checks(&served, "rows.py", &extra, 11);
}
