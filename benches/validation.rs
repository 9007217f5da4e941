//! Input validation: checking inputs against a model's signature (`Signature::bind`), by
//! position and by name, for the MLP (one input) and the encoder (two inputs sharing named
//! dynamic dims), and how fast a bad input is turned into an error.
//!
//! `cargo bench --bench validation` (all), or `cargo bench --bench validation -- validation/named`.

mod common;

use criterion::{criterion_group, Criterion};
use rivet::{Inputs, Signature, Tensor};

fn spec(model: &str) -> Signature {
    Signature::from_spec_file(&common::models_dir().join(model).join(format!("{model}.spec.json"))).unwrap()
}

fn case(model: &str, case: &str, names: &[&str]) -> Vec<(String, Tensor)> {
    let inputs = rivet_testkit::case(model, case).inputs;
    names
        .iter()
        .map(|n| {
            inputs
                .iter()
                .find(|(m, _)| m == n)
                .cloned()
                .unwrap_or_else(|| panic!("{model}/{case}: no input {n}"))
        })
        .collect()
}

fn bench_validation(c: &mut Criterion) {
    let mut group = c.benchmark_group("validation");
    for (model, case_name, names) in
        [("mlp", "b1", &["features"][..]), ("encoder", "b4_s24", &["input_ids", "attention_mask"][..])]
    {
        let signature = spec(model);
        let inputs = case(model, case_name, names);
        group.bench_function(format!("positional/{model}"), |b| {
            b.iter(|| {
                signature.bind(Inputs::Positional(inputs.iter().map(|(_, t)| t.view()).collect())).unwrap()
            })
        });
        group.bench_function(format!("named/{model}"), |b| {
            b.iter(|| {
                let named = inputs.iter().rev().map(|(n, t)| (n.as_str(), t.view())).collect();
                signature.bind(Inputs::Named(named)).unwrap()
            })
        });
    }
    // A wrong dtype: the error, message included, is the cost.
    let signature = spec("mlp");
    let wrong = Tensor::from_slice(&[1, 16], &[0f64; 16]).unwrap();
    group.bench_function("rejected/mlp_dtype", |b| {
        b.iter(|| signature.bind(Inputs::Positional(vec![wrong.view()])).unwrap_err())
    });
    group.finish();
}

criterion_group!(benches, bench_validation);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
