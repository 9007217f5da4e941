//! Candle's own executor against ONNX Runtime and against the `candle_onnx::simple_eval` path
//! it replaced, on the bundled models (and ResNet-18 when exported), at batch 1 and 8 (a case's
//! first sample, repeated). `cargo bench --bench candle` (release) or `--profile dev` for a
//! quick look.
//!
//! Criterion times each at one thread (`simple_eval` inside a one-thread rayon pool, the pool
//! Candle's own operators split over). After criterion's timings it prints ratios measured side
//! by side (alternating blocks of calls, 40 rounds; `RIVET_SIDE_BY_SIDE_ROUNDS` sets how many, 0
//! none; each block loads its model and drops it after, so that no other model's threads share
//! the cores), which the machine's drift does not skew: Candle ÷ ORT at 1 and at 2 intra-op threads
//! (each backend with the same count), and Candle at 1 and 2 threads ÷ Candle with no thread
//! count (its default). They are written to `candle_side_by_side.json` under `target/bench/`
//! (or `RIVET_BENCH_DIR`), which `make bench-candle` puts on the benchmark page. Like the
//! `rivet` binaries, it keeps freed memory in the process ([`rivet::memory`]).

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::models_dir;
use criterion::{criterion_group, Criterion};
use rivet::{Backend, Tensor};

/// The case inputs of `network`'s case `case`, in signature order.
fn case_inputs(network: &str, case: &str) -> Vec<(String, Tensor)> {
    rivet_testkit::case(network, case).inputs
}

fn to_candle(t: &Tensor) -> candle_core::Tensor {
    let dtype = match t.dtype() {
        rivet::DType::F32 => candle_core::DType::F32,
        rivet::DType::I64 => candle_core::DType::I64,
        other => panic!("bench inputs are f32 or i64, not {other}"),
    };
    candle_core::Tensor::from_raw_buffer(t.as_bytes(), dtype, t.shape(), &candle_core::Device::Cpu).unwrap()
}

/// `t`'s first sample repeated `n` times along axis 0.
fn batch_of(t: &Tensor, n: usize) -> Tensor {
    let per = t.as_bytes().len() / t.shape()[0];
    let mut shape = t.shape().to_vec();
    shape[0] = n;
    Tensor::from_bytes(t.dtype(), &shape, &t.as_bytes()[..per].repeat(n)).unwrap()
}

/// The thread settings compared: one and two intra-op threads, then none given (the default).
const SETTINGS: [Option<usize>; 3] = [Some(1), Some(2), None];

fn load(
    path: &std::path::Path,
    backend: Backend,
    threads: Option<usize>,
) -> std::sync::Arc<dyn rivet::Model> {
    let options = rivet::LoadOptions { backend, intra_op_threads: threads, ..rivet::LoadOptions::default() };
    rivet::load(path, &options).expect("bundled model loads")
}

/// One model at one batch size: its ONNX Runtime and Candle models at each of [`SETTINGS`]
/// (ORT's default left out: it is not compared), its inputs, and the `simple_eval` path where
/// that can run it.
struct Fixture {
    label: String,
    /// The model file.
    path: std::path::PathBuf,
    /// `(backend, threads, model)`.
    models: Vec<(Backend, Option<usize>, std::sync::Arc<dyn rivet::Model>)>,
    inputs: Vec<(String, Tensor)>,
    proto: Option<candle_onnx::onnx::ModelProto>,
}

impl Fixture {
    fn named(&self) -> Vec<(&str, &Tensor)> {
        self.inputs.iter().map(|(n, t)| (n.as_str(), t)).collect()
    }

    fn simple_eval(&self, proto: &candle_onnx::onnx::ModelProto) {
        let feeds: HashMap<String, candle_core::Tensor> =
            self.inputs.iter().map(|(n, t)| (n.clone(), to_candle(t))).collect();
        candle_onnx::simple_eval(proto, feeds).unwrap();
    }
}

/// Every model at batch 1 and 8 whose label (`network/bN`) contains `filter`.
fn fixtures(filter: Option<&str>) -> Vec<Fixture> {
    // (network, case whose first sample is repeated, whether `simple_eval` can run it)
    let mut runs = vec![("mlp", "b1", true), ("cnn", "b1", true), ("encoder", "b1_s24", false)];
    if models_dir().join("resnet18/resnet18.onnx").exists() {
        runs.push(("resnet18", "b2", false));
    }
    let mut all = Vec::new();
    for (network, case, simple_eval) in runs {
        let path = models_dir().join(network).join(format!("{network}.onnx"));
        for batch in [1, 8] {
            let label = format!("{network}/b{batch}");
            if filter.is_some_and(|f| !format!("candle/{label}").contains(f)) {
                continue;
            }
            let mut models = Vec::new();
            for threads in SETTINGS {
                for backend in [Backend::ORT, Backend::CANDLE] {
                    if backend == Backend::ORT && threads.is_none() {
                        continue;
                    }
                    models.push((backend.clone(), threads, load(&path, backend, threads)));
                }
            }
            let inputs =
                case_inputs(network, case).into_iter().map(|(n, t)| (n, batch_of(&t, batch))).collect();
            let proto = simple_eval.then(|| candle_onnx::read_file(&path).unwrap());
            all.push(Fixture { label, path: path.clone(), models, inputs, proto });
        }
    }
    all
}

fn bench_models(c: &mut Criterion) {
    let one_thread = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("a one-thread pool");
    for fixture in fixtures(c_filter()) {
        let named = fixture.named();
        let mut group = c.benchmark_group(format!("candle/{}", fixture.label));
        for (backend, _, model) in fixture.models.iter().filter(|(_, threads, _)| *threads == Some(1)) {
            group.bench_function(backend.to_string(), |b| b.iter(|| model.run_named(&named).unwrap()));
        }
        if let Some(proto) = &fixture.proto {
            group.bench_function("simple_eval", |b| {
                b.iter(|| one_thread.install(|| fixture.simple_eval(proto)))
            });
        }
        group.finish();
    }
}

/// The first argument that is not a flag (nor a flag's value): the filter, as criterion reads it.
fn c_filter() -> Option<&'static str> {
    static FILTER: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    FILTER
        .get_or_init(|| {
            let args: Vec<String> = std::env::args().skip(1).collect();
            let mut i = 0;
            while i < args.len() {
                let arg = &args[i];
                if !arg.starts_with('-') {
                    return Some(arg.clone());
                }
                // criterion's flags that take a value
                let takes_value = [
                    "--warm-up-time",
                    "--measurement-time",
                    "--sample-size",
                    "--nresamples",
                    "--save-baseline",
                    "--baseline",
                    "--load-baseline",
                    "--profile-time",
                    "--noise-threshold",
                    "--confidence-level",
                    "--significance-level",
                    "--color",
                    "--output-format",
                    "--plotting-backend",
                ];
                i += if takes_value.contains(&arg.as_str()) { 2 } else { 1 };
            }
            None
        })
        .as_deref()
}

/// The pause before each block of calls in [`side_by_side`] (followed by one untimed call).
const BLOCK_PAUSE: Duration = Duration::from_millis(20);

/// The least untimed time before a block's timed calls.
const WARM: Duration = Duration::from_millis(20);

/// Timed stretches per block, each of about 5 ms of calls (at least one call): the block's time
/// per call is their median, so that one call the machine slowed (a call of ResNet-18 at
/// batch 8 fills a stretch alone) does not decide its round's ratios.
const STRETCHES: usize = 5;

/// The ratios side by side, which unlike criterion's separate timings share the machine's
/// drift: per round, one block of calls of each contender, in an order that rotates from round
/// to round; per round the ratios of the times per call; printed, the median over the rounds
/// and the quartiles.
fn side_by_side(filter: Option<&str>, rounds: usize) {
    let quartiles = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        (at(0.25), at(0.5), at(0.75))
    };
    println!("\nside by side, {rounds} rounds (median ratio, quartiles in brackets):");
    let mut rows = Vec::new();
    for mut fixture in fixtures(filter) {
        // Each block loads its contender and drops it after: only the model being timed is in
        // the process, so no other backend's threads (ORT's spinning workers above all) share
        // the cores with it, as none would for a backend running alone.
        let contenders: Vec<(Backend, Option<usize>)> =
            fixture.models.drain(..).map(|(backend, threads, _)| (backend, threads)).collect();
        let named = fixture.named();
        let block = |which: usize, calls: Option<u32>| -> (u32, f64) {
            let (backend, threads) = &contenders[which];
            let model = load(&fixture.path, backend.clone(), *threads);
            let call = || drop(std::hint::black_box(model.run_named(&named).unwrap()));
            // The first run's one-off work, untimed.
            call();
            // Calls per stretch: about 5 ms, from one timed call when not given.
            let calls = calls.unwrap_or_else(|| {
                let start = Instant::now();
                call();
                (0.005 / start.elapsed().as_secs_f64().max(1e-9)).clamp(1.0, 100_000.0) as u32
            });
            // Untimed calls, as many as a stretch's and for at least WARM: the backend's threads
            // awake, placed on their own cores by the scheduler (a thread the model just
            // started can share the loading thread's core for milliseconds), and its memory in
            // use, as for a backend serving back-to-back requests.
            let warm = Instant::now();
            let mut warmed = 0;
            while warmed < calls || warm.elapsed() < WARM {
                call();
                warmed += 1;
            }
            let stretches: Vec<f64> = (0..STRETCHES)
                .map(|_| {
                    let start = Instant::now();
                    for _ in 0..calls {
                        call();
                    }
                    start.elapsed().as_secs_f64() / f64::from(calls)
                })
                .collect();
            (calls, quartiles(stretches).1)
        };
        let calls: Vec<u32> = (0..contenders.len()).map(|i| block(i, None).0).collect();
        let mut per_call = vec![Vec::with_capacity(rounds); contenders.len()];
        for round in 0..rounds {
            for i in 0..contenders.len() {
                let which = (i + round) % contenders.len();
                // A pause between blocks, so that the pool threads the last block woke
                // (rayon's global pool, which Candle's default setting uses, yields before it
                // sleeps) are idle again.
                std::thread::sleep(BLOCK_PAUSE);
                per_call[which].push(block(which, Some(calls[which])).1);
            }
        }
        let at = |backend: &Backend, threads: Option<usize>| {
            contenders.iter().position(|(b, t)| b == backend && *t == threads).expect("a contender")
        };
        let ratio = |a: usize, b: usize| {
            let (q1, m, q3) = quartiles(per_call[a].iter().zip(&per_call[b]).map(|(x, y)| x / y).collect());
            format!("{m:.2} [{q1:.2}–{q3:.2}]")
        };
        let us = |i: usize| format!("{:.2}", quartiles(per_call[i].clone()).1 * 1e6);
        let (ort1, candle1) = (at(&Backend::ORT, Some(1)), at(&Backend::CANDLE, Some(1)));
        let (ort2, candle2) = (at(&Backend::ORT, Some(2)), at(&Backend::CANDLE, Some(2)));
        let candle_default = at(&Backend::CANDLE, None);
        let row = vec![
            fixture.label.clone(),
            ratio(candle1, ort1),
            ratio(candle2, ort2),
            ratio(candle1, candle_default),
            ratio(candle2, candle_default),
            us(ort1),
            us(candle1),
            us(ort2),
            us(candle2),
            us(candle_default),
        ];
        println!(
            "  {:<12} candle / ort: 1 thread {}, 2 threads {}; candle / candle default: 1 thread {}, \
             2 threads {}; µs per call: ort {} / {}, candle {} / {} / default {}",
            row[0], row[1], row[2], row[3], row[4], row[5], row[7], row[6], row[8], row[9]
        );
        rows.push(row);
    }
    let table = serde_json::json!({
        "columns": ["model / batch", "Candle ÷ ORT, 1 thread", "Candle ÷ ORT, 2 threads",
                    "Candle 1 thread ÷ Candle default", "Candle 2 threads ÷ Candle default",
                    "ORT µs, 1 thread", "Candle µs, 1 thread", "ORT µs, 2 threads", "Candle µs, 2 threads",
                    "Candle µs, default"],
        "rows": rows,
        "notes": [format!("{rounds} rounds of one block of calls per contender in rotating order (after a 20 ms pause, loading the contender, then untimed calls, as many as a stretch has and for at least 20 ms, so that the threads it starts are on their own cores, then {STRETCHES} timed stretches of about 5 ms, at least one call each, the block's time per call their median; it is dropped after the block, so no other model's threads are in the process); \
                           each ratio is the median of the per-round ratios, quartiles in brackets; times are \
                           medians per call. Threads are intra-op threads, the same count on both backends; \
                           Candle's default is no count given (its rayon pool, {} threads here).",
                          rayon::current_num_threads())],
    });
    let dir = std::env::var_os("RIVET_BENCH_DIR").map_or_else(
        || std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench"),
        std::path::PathBuf::from,
    );
    let path = dir.join("candle_side_by_side.json");
    let written = std::fs::create_dir_all(path.parent().expect("a file in a folder"))
        .and_then(|()| std::fs::write(&path, table.to_string()));
    match written {
        Ok(()) => println!("side by side: {}", path.display()),
        Err(e) => eprintln!("cannot write {}: {e}", path.display()),
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = bench_models
}

fn main() {
    // As the `rivet` binaries do: each run reuses the memory the last one freed.
    rivet::memory::keep_freed_memory();
    benches();
    Criterion::default().configure_from_args().final_summary();
    // The filter criterion's benchmarks take picks the side-by-side ones too;
    // RIVET_SIDE_BY_SIDE_ROUNDS=0 skips them.
    let rounds = std::env::var("RIVET_SIDE_BY_SIDE_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(40);
    if rounds > 0 {
        side_by_side(c_filter(), rounds);
    }
}
