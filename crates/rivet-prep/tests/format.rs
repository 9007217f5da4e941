//! The fitted-pipeline file: what is committed reads and writes back byte for byte, and a
//! file whose statistics do not belong to their step is refused when read, naming the step.

use std::path::PathBuf;

use rivet_prep::{FittedPipeline, PrepError};

fn committed() -> (PathBuf, String) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/tabular/tabular.pipeline.json");
    let text = std::fs::read_to_string(&path).expect("the bundled fitted pipeline");
    (path, text)
}

#[test]
fn the_committed_pipeline_round_trips_byte_for_byte() {
    let (path, text) = committed();
    let pipeline = FittedPipeline::load(&path).unwrap();
    assert_eq!(serde_json::to_string_pretty(&pipeline).unwrap(), text);
    assert_eq!(pipeline.fitted().len(), pipeline.spec().steps.len());
    assert_eq!(pipeline.features().len(), 16, "{:?}", pipeline.features());
}

fn refused(text: &str) -> String {
    match FittedPipeline::from_json(text) {
        Err(PrepError::Spec(message)) => message,
        other => panic!("expected a spec error, got {other:?}"),
    }
}

#[test]
fn statistics_of_another_kind_or_count_are_refused_when_read() {
    let (_, text) = committed();
    let mut file: serde_json::Value = serde_json::from_str(&text).unwrap();
    let steps = file["spec"]["steps"].as_array().unwrap().clone();
    let scale = steps.iter().position(|s| s["op"] == "standard_scale").expect("a standard_scale step");
    let one_hot = steps.iter().position(|s| s["op"] == "one_hot").expect("a one_hot step");

    let mut other_kind = file.clone();
    other_kind["fitted"][scale] = file["fitted"][one_hot].clone();
    assert_eq!(
        refused(&other_kind.to_string()),
        format!("steps[{scale}] (op \"standard_scale\"): the fitted statistics do not match the step")
    );

    let mut short = file.clone();
    short["fitted"][scale]["mean"].as_array_mut().unwrap().pop();
    assert_eq!(
        refused(&short.to_string()),
        format!("steps[{scale}] (op \"standard_scale\"): the fitted statistics do not match the step")
    );

    let mut stateless = file.clone();
    stateless["fitted"][0] = serde_json::json!({"kind": "impute", "statistics": [1.0]});
    assert_eq!(
        refused(&stateless.to_string()),
        "steps[0] (op \"select\"): the fitted statistics do not match the step"
    );

    file["fitted"].as_array_mut().unwrap().pop();
    assert_eq!(
        refused(&file.to_string()),
        format!("{} fitted entries for {} steps", steps.len() - 1, steps.len())
    );
}
