//! `rivet prep fit`, `rivet prep transform` and `rivet predict` (cargo feature `prep`, on by
//! default): the command line over `rivet-prep`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, Subcommand};
use rivet::Backend;
use rivet_prep::{FittedPipeline, NpySink, PipelineSpec, PrepError, Scorer, TableBatches};

use crate::load::LoadArgs;

/// `rivet prep`'s subcommands.
#[derive(Subcommand)]
pub(crate) enum PrepCommand {
    /// Fit a pipeline spec (TOML or JSON) on a table and save the fitted pipeline as JSON.
    Fit {
        /// The spec: steps over named columns.
        #[arg(long)]
        spec: PathBuf,
        /// The training table: CSV, or Parquet (.parquet, .pq).
        #[arg(long)]
        data: PathBuf,
        /// Where to write the fitted pipeline (JSON).
        #[arg(long)]
        out: PathBuf,
    },
    /// Transform a table with a fitted pipeline into a [rows, features] f32 .npy file, batch by
    /// batch with bounded memory.
    Transform {
        /// The fitted pipeline written by `rivet prep fit`.
        #[arg(long)]
        pipeline: PathBuf,
        /// The table: CSV, or Parquet (.parquet, .pq).
        #[arg(long)]
        data: PathBuf,
        /// The features file (.npy).
        #[arg(long)]
        out: PathBuf,
        /// Rows per batch.
        #[arg(long, default_value_t = 65536)]
        batch_size: usize,
    },
}

/// `rivet predict`'s arguments.
#[derive(Args)]
pub(crate) struct PredictArgs {
    /// The model file (.pt or .onnx): one f32 [rows, features] input.
    #[arg(long)]
    model: PathBuf,
    /// The fitted pipeline (default: NAME.pipeline.json beside the model).
    #[arg(long)]
    pipeline: Option<PathBuf>,
    /// The table to score: CSV, or Parquet (.parquet, .pq).
    #[arg(long)]
    data: PathBuf,
    /// The predictions: .csv, or .parquet/.pq. Written under a temporary name and renamed
    /// when every row is scored.
    #[arg(long)]
    out: PathBuf,
    /// A column copied from the input to the predictions, first.
    #[arg(long)]
    id_column: Option<String>,
    /// Rows per batch.
    #[arg(long, default_value_t = 8192)]
    batch_size: usize,
    /// Which backend: auto, tch, ort, candle, or a registered backend's name.
    #[arg(long, short = 'b', default_value = "auto")]
    backend: Backend,
    #[command(flatten)]
    pub(crate) load: LoadArgs,
}

/// A failed command's message: a preprocessing error, or one of loading or running the model.
type Failure = Box<dyn std::error::Error>;

fn prep_error(e: PrepError) -> Failure {
    e.into()
}

fn check_batch(batch_size: usize) -> Result<(), Failure> {
    if batch_size == 0 {
        return Err("--batch-size must be at least 1".into());
    }
    Ok(())
}

fn report(result: Result<ExitCode, Failure>) -> ExitCode {
    result.unwrap_or_else(|e| {
        eprintln!("error: {e}");
        ExitCode::FAILURE
    })
}

/// Runs a `rivet prep` subcommand; an error is printed as one `error:` line.
pub(crate) fn prep(command: &PrepCommand) -> ExitCode {
    report(run_prep(command))
}

/// Runs `rivet predict`; an error is printed as one `error:` line.
pub(crate) fn predict(args: &PredictArgs) -> ExitCode {
    report(run_predict(args))
}

fn run_prep(command: &PrepCommand) -> Result<ExitCode, Failure> {
    match command {
        PrepCommand::Fit { spec, data, out } => {
            let spec = PipelineSpec::from_file(spec).map_err(prep_error)?;
            let df = rivet_prep::read_table_with(data, &spec.csv).map_err(prep_error)?;
            let fitted = FittedPipeline::fit(&spec, &df).map_err(prep_error)?;
            fitted.save(out).map_err(prep_error)?;
            eprintln!(
                "fitted on {} rows: {} features -> {}",
                df.height(),
                fitted.features().len(),
                out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        PrepCommand::Transform { pipeline, data, out, batch_size } => {
            check_batch(*batch_size)?;
            let start = Instant::now();
            let pipeline = FittedPipeline::load(pipeline).map_err(prep_error)?;
            let mut sink = NpySink::create(out, pipeline.features().len()).map_err(prep_error)?;
            let mut rows = 0;
            for batch in
                TableBatches::open_for(data, *batch_size, &pipeline).map_err(prep_error)?.read_ahead(1)
            {
                let batch = batch.map_err(prep_error)?;
                let (features, _) = pipeline.transform_batch(&batch).map_err(prep_error)?;
                sink.write(&features).map_err(prep_error)?;
                rows += batch.df.height();
            }
            sink.finish().map_err(prep_error)?;
            eprintln!(
                "{rows} rows x {} features -> {} in {:.2} s",
                pipeline.features().len(),
                out.display(),
                start.elapsed().as_secs_f64()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn run_predict(args: &PredictArgs) -> Result<ExitCode, Failure> {
    check_batch(args.batch_size)?;
    let start = Instant::now();
    let pipeline_path = args.pipeline.clone().unwrap_or_else(|| Scorer::pipeline_beside(&args.model));
    if args.pipeline.is_none() && !pipeline_path.exists() {
        return Err(format!(
            "no --pipeline given and no fitted pipeline beside the model ({} does not exist)",
            pipeline_path.display()
        )
        .into());
    }
    let pipeline = FittedPipeline::load(&pipeline_path).map_err(prep_error)?;
    let model = rivet::load(&args.model, &args.load.options(&args.backend)?)?;
    let backend = model.backend().to_owned();
    let scorer = Scorer::new(model, pipeline).map_err(prep_error)?;
    let bar = indicatif::ProgressBar::new(0).with_style(
        indicatif::ProgressStyle::with_template("{bar:40} {percent:>3}% {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let summary = scorer
        .predict_file(&args.data, &args.out, args.id_column.as_deref(), args.batch_size, &mut |rows,
                                                                                               (
            done,
            total,
        )| {
            bar.set_length(total);
            bar.set_position(done);
            bar.set_message(format!("{rows} rows"));
        })
        .map_err(|e| {
            bar.abandon();
            prep_error(e)
        })?;
    bar.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();
    eprintln!(
        "{} rows in {} batch(es) on {backend} -> {} in {seconds:.2} s ({:.0} rows/s)",
        summary.rows,
        summary.batches,
        display(&args.out),
        summary.rows as f64 / seconds.max(1e-9)
    );
    Ok(ExitCode::SUCCESS)
}

fn display(path: &Path) -> String {
    path.display().to_string()
}
