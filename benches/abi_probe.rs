//! Counts what the C ABI adds to a run, in instructions rather than noisy seconds:
//!
//! ```sh
//! cargo bench --bench abi_probe --no-run   # builds target/release/deps/abi_probe-*
//! for api in rust c; do for n in 1000 3000; do
//!   valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/deps/abi_probe-HASH ort $api $n
//! done; done   # (total at 3000 - total at 1000) / 2000 = instructions per run
//! ```
//!
//! Arguments: BACKEND (tch|ort|candle) API (rust|c|direct) RUNS. Runs the bundled MLP at batch
//! one. `direct` (ort only) is the same call made on `ort` itself, as `overhead/ort/direct`
//! makes it: Rivet's ORT overhead in instructions is rust minus direct.

mod common;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4
        || args[3].parse::<usize>().is_err()
        || !["rust", "c", "direct"].contains(&args[2].as_str())
    {
        eprintln!("usage: abi_probe tch|ort|candle rust|c|direct RUNS");
        std::process::exit(2);
    }
    std::env::set_var("RAYON_NUM_THREADS", "1");
    let runs: usize = args[3].parse().unwrap_or(0);
    if args[2] == "direct" {
        let path = common::models_dir().join("mlp/mlp.onnx");
        let data = common::mlp_input().as_slice::<f32>().unwrap().to_vec();
        let env = rivet::ort::environment().unwrap();
        let mut session = ort::session::Session::builder(env)
            .unwrap()
            .with_intra_threads(1)
            .unwrap()
            .commit_from_file(&path)
            .unwrap();
        for _ in 0..runs {
            let t = ort::value::TensorRef::from_array_view(([1usize, 16], &data[..])).unwrap();
            let out = session.run(ort::inputs!["features" => t]).unwrap();
            let (shape, values) = out["logits"].try_extract_tensor::<f32>().unwrap();
            std::hint::black_box((shape.to_vec(), values.to_vec()));
        }
        return;
    }
    let mlp = common::CapiMlp::load(&args[1]);
    for _ in 0..runs {
        if args[2] == "rust" {
            std::hint::black_box(mlp.run_rust());
        } else {
            mlp.run_c();
        }
    }
}
