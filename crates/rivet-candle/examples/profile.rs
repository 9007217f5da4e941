//! Runs an ONNX model through the Candle executor many times, for profiling:
//! `RIVET_CANDLE_PROFILE=1 cargo run --release -p rivet-candle --example profile -- MODEL RUNS IN.npy...`
//! (with `RIVET_CANDLE_PROFILE=1`, each step's time goes to stderr; or run it under `perf`).

use std::path::Path;

use rivet_core::Model;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: profile MODEL RUNS INPUT.npy...");
        std::process::exit(2);
    }
    let model = rivet_candle::CandleModel::from_bytes(&std::fs::read(&args[1]).unwrap(), Path::new(&args[1]))
        .unwrap();
    let runs: usize = args[2].parse().unwrap();
    let inputs: Vec<rivet_core::Tensor> =
        args[3..].iter().map(|p| rivet_core::npy::read_npy(Path::new(p)).unwrap()).collect();
    let refs: Vec<&rivet_core::Tensor> = inputs.iter().collect();
    let start = std::time::Instant::now();
    for _ in 0..runs {
        model.run(&refs).unwrap();
    }
    eprintln!("{:.3} µs per run", start.elapsed().as_secs_f64() * 1e6 / runs as f64);
}
