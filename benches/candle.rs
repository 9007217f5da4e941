//! Candle's own executor against ONNX Runtime and against the `candle_onnx::simple_eval` path
//! it replaced, one thread, on the bundled models (and ResNet-18 when exported), at batch 1 and
//! 8 (a case's first sample, repeated). `cargo bench --bench candle` (release) or `--profile
//! dev` for a quick look. After criterion's timings it prints the same ratios measured side by
//! side (alternating blocks of calls, 40 rounds; `RIVET_SIDE_BY_SIDE_ROUNDS` sets how many, 0
//! none), which the machine's drift does not skew, and writes them to
//! target/bench/candle_side_by_side.json, which `make bench-candle` puts on the benchmark page.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{load, models_dir};
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

/// One model at one batch size: its ONNX Runtime and Candle models, its inputs, and the
/// `simple_eval` path where that can run it.
struct Fixture {
    label: String,
    models: Vec<(Backend, std::sync::Arc<dyn rivet::Model>)>,
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
            let models =
                [Backend::ORT, Backend::CANDLE].into_iter().map(|b| (b.clone(), load(&path, b))).collect();
            let inputs =
                case_inputs(network, case).into_iter().map(|(n, t)| (n, batch_of(&t, batch))).collect();
            let proto = simple_eval.then(|| candle_onnx::read_file(&path).unwrap());
            all.push(Fixture { label, models, inputs, proto });
        }
    }
    all
}

fn bench_models(c: &mut Criterion) {
    for fixture in fixtures(None) {
        let named = fixture.named();
        let mut group = c.benchmark_group(format!("candle/{}", fixture.label));
        for (backend, model) in &fixture.models {
            group.bench_function(backend.to_string(), |b| b.iter(|| model.run_named(&named).unwrap()));
        }
        if let Some(proto) = &fixture.proto {
            group.bench_function("simple_eval", |b| b.iter(|| fixture.simple_eval(proto)));
        }
        group.finish();
    }
}

/// The ratios side by side, which unlike criterion's separate timings share the machine's
/// drift: per round, one block of calls (about 5 ms) of each contender, in an order that
/// rotates from round to round; per round the ratios of the times per call; printed, the
/// median over the rounds and the quartiles.
fn side_by_side(filter: Option<&str>, rounds: usize) {
    let quartiles = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        (at(0.25), at(0.5), at(0.75))
    };
    println!("\nside by side, {rounds} rounds (median ratio, quartiles in brackets):");
    let mut rows = Vec::new();
    for fixture in fixtures(filter) {
        let named = fixture.named();
        let mut contenders: Vec<Box<dyn Fn() + '_>> = Vec::new();
        for (_, model) in &fixture.models {
            let named = &named;
            contenders.push(Box::new(move || drop(std::hint::black_box(model.run_named(named).unwrap()))));
        }
        if let Some(proto) = &fixture.proto {
            let fixture = &fixture;
            contenders.push(Box::new(move || fixture.simple_eval(proto)));
        }
        // Calls per block: about 5 ms each, from a first timing after a warm-up call.
        let calls: Vec<u32> = contenders
            .iter()
            .map(|f| {
                f();
                let start = Instant::now();
                f();
                (0.005 / start.elapsed().as_secs_f64().max(1e-9)).clamp(1.0, 100_000.0) as u32
            })
            .collect();
        let mut per_call = vec![Vec::with_capacity(rounds); contenders.len()];
        for round in 0..rounds {
            for i in 0..contenders.len() {
                let which = (i + round) % contenders.len();
                let start = Instant::now();
                for _ in 0..calls[which] {
                    contenders[which]();
                }
                per_call[which].push(start.elapsed().as_secs_f64() / f64::from(calls[which]));
            }
        }
        let ratio = |a: usize, b: usize| {
            quartiles(per_call[a].iter().zip(&per_call[b]).map(|(x, y)| x / y).collect())
        };
        let (q1, m, q3) = ratio(1, 0);
        let mut line = format!("  {:<12} candle / ort {m:.2} [{q1:.2}–{q3:.2}]", fixture.label);
        if contenders.len() == 3 {
            let (q1, m, q3) = ratio(2, 1);
            line += &format!(", simple_eval / candle {m:.2}× [{q1:.2}–{q3:.2}]");
        }
        let us = |i: usize| quartiles(per_call[i].clone()).1 * 1e6;
        line += &format!("; per call ort {:.2} µs, candle {:.2} µs", us(0), us(1));
        let mut row = vec![
            fixture.label.clone(),
            format!("{m:.2} [{q1:.2}–{q3:.2}]"),
            format!("{:.2}", us(0)),
            format!("{:.2}", us(1)),
            String::new(),
        ];
        if contenders.len() == 3 {
            line += &format!(", simple_eval {:.2} µs", us(2));
            let (q1, m, q3) = ratio(2, 1);
            row[4] = format!("{m:.2} [{q1:.2}–{q3:.2}]");
        }
        println!("{line}");
        rows.push(row);
    }
    let table = serde_json::json!({
        "columns": ["model / batch", "Candle ÷ ORT, median [quartiles]", "ORT µs per call", "Candle µs per call",
                    "simple_eval ÷ Candle"],
        "rows": rows,
        "notes": [format!("{rounds} rounds of one block of calls (about 5 ms) per contender in rotating order; \
                           the median of the per-round ratios with its quartiles. One intra-op thread on both.")],
    });
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench/candle_side_by_side.json");
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
    // Before any rayon pool exists: Candle then runs on one thread, like the other backends.
    std::env::set_var("RAYON_NUM_THREADS", "1");
    benches();
    Criterion::default().configure_from_args().final_summary();
    // The first argument that is not a flag filters, as it does criterion's benchmarks;
    // RIVET_SIDE_BY_SIDE_ROUNDS=0 skips the side-by-side ratios.
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let rounds = std::env::var("RIVET_SIDE_BY_SIDE_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(40);
    if rounds > 0 {
        side_by_side(filter.as_deref(), rounds);
    }
}
