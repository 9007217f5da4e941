//! `rivet run`'s one-shot job (load an ONNX model, read one `.npy` input, run once, write each
//! output as `.npy`) done by ONNX Runtime alone, through `ort` with its default session
//! options: the floor under Rivet's start-up time and peak memory. `make bench-startup` runs it
//! beside `rivet run` and the Python script.
//!
//! ```sh
//! cargo run --release -p rivet-ort --example ort_alone -- MODEL.onnx OUT_DIR INPUT.npy
//! ```

use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model, out, input] = &args[..] else {
        eprintln!("usage: ort_alone MODEL.onnx OUT_DIR INPUT.npy");
        std::process::exit(2);
    };
    // The environment Rivet makes (telemetry off), from the library the build found.
    let environment = rivet_ort::environment()?;
    let mut session = ort::session::Session::builder(environment)?.commit_from_file(model)?;
    let x = rivet_core::npy::read_npy(Path::new(input))?;
    let value = ort::value::TensorRef::from_array_view((x.shape(), x.as_slice::<f32>()?))?;
    let outputs = session.run(ort::inputs![value])?;
    std::fs::create_dir_all(out)?;
    for (name, value) in outputs.iter() {
        let tensor = rivet_ort::from_ort(name, &value)?;
        rivet_core::npy::write_npy(&Path::new(out).join(format!("{name}.npy")), &tensor)?;
    }
    Ok(())
}
