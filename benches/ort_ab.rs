//! Rivet's ORT overhead as a ratio measured side by side: `Model::run` on the bundled MLP at
//! batch 1 against the same call made directly on `ort` (as `overhead/ort/direct` makes it),
//! in alternating blocks, so that the machine's drift (frequency, other processes, cache
//! state) hits both alike.
//!
//! ```sh
//! cargo bench --bench ort_ab            # or: make bench BENCH=ort_ab
//! cargo bench --bench ort_ab -- 400 500 # rounds, calls per block
//! ```
//!
//! For an instruction count, which unlike time does not drift, one side alone runs N calls and
//! exits: `ort_ab rivet N` or `ort_ab direct N` (the bench binary under
//! `valgrind --tool=callgrind`; the difference between N = 12,000 and N = 2,000, over 10,000, is
//! the cost per call without the set-up).
//!
//! Each round times one block of Rivet calls and one block of direct calls, in an order that
//! alternates from round to round, and keeps the round's ratio Rivet / direct. It prints the
//! median ratio with its quartiles and the median time per call of each side. Both sides run
//! one intra-op thread on sessions of the same environment.

mod common;

use std::time::Instant;

use rivet::Backend;

fn quartiles(mut values: Vec<f64>) -> [f64; 3] {
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    [at(0.25), at(0.5), at(0.75)]
}

fn main() {
    // `cargo bench` passes `--bench`; the numbers are ours.
    let numbers: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let rounds = numbers.first().copied().unwrap_or(400).max(4);
    let block = numbers.get(1).copied().unwrap_or(500).max(1);

    let path = common::models_dir().join("mlp/mlp.onnx");
    let model = common::load(&path, Backend::ORT);
    let x = common::mlp_input();
    let data = x.as_slice::<f32>().expect("f32 input").to_vec();
    let env = rivet::ort::environment().expect("ONNX Runtime");
    let mut session = ort::session::Session::builder(env)
        .expect("builder")
        .with_intra_threads(1)
        .expect("threads")
        .commit_from_file(&path)
        .expect("session");
    let mut direct = move || {
        let t = ort::value::TensorRef::from_array_view(([1usize, 16], &data[..])).expect("input");
        let out = session.run(ort::inputs!["features" => t]).expect("run");
        let (shape, values) = out["logits"].try_extract_tensor::<f32>().expect("logits");
        (shape.to_vec(), values.to_vec())
    };
    let rivet = || model.run(&[&x]).expect("run");
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(side) = args.iter().position(|a| a == "rivet" || a == "direct") {
        let calls: usize = args.get(side + 1).and_then(|n| n.parse().ok()).unwrap_or(10_000);
        for _ in 0..calls {
            if args[side] == "rivet" {
                drop(std::hint::black_box(rivet()));
            } else {
                drop(std::hint::black_box(direct()));
            }
        }
        return;
    }
    // The same answer both ways, and everything warm.
    let theirs = direct().1;
    let ours = rivet().into_tensors().remove(0);
    assert_eq!(ours.as_slice::<f32>().expect("f32 logits"), &theirs[..], "Rivet and ort disagree");
    for _ in 0..block * 4 {
        std::hint::black_box(direct());
        std::hint::black_box(rivet());
    }

    let time = |f: &mut dyn FnMut()| {
        let start = Instant::now();
        for _ in 0..block {
            f();
        }
        start.elapsed().as_secs_f64() / block as f64
    };
    let (mut ratios, mut ours, mut theirs) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let (r, d) = if round % 2 == 0 {
            let r = time(&mut || drop(std::hint::black_box(rivet())));
            (r, time(&mut || drop(std::hint::black_box(direct()))))
        } else {
            let d = time(&mut || drop(std::hint::black_box(direct())));
            (time(&mut || drop(std::hint::black_box(rivet()))), d)
        };
        ratios.push(r / d);
        ours.push(r);
        theirs.push(d);
    }
    let [q1, median, q3] = quartiles(ratios);
    let us = |v: Vec<f64>| quartiles(v)[1] * 1e6;
    println!(
        "ort_ab: {rounds} rounds of {block} calls each side: Rivet / direct = {median:.4} \
         (quartiles {q1:.4}–{q3:.4}), overhead {:+.1} %; per call Rivet {:.3} µs, direct {:.3} µs (medians)",
        (median - 1.0) * 100.0,
        us(ours),
        us(theirs)
    );
}
