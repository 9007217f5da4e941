//! `rivet-tabular`: `rivet prep` and `rivet predict`, the commands that link Polars, in a
//! binary of their own (`rivet` hands them over). Cargo feature `prep`, on by default.

mod load;
mod prep;
#[cfg(feature = "serve")]
mod rows;
#[cfg(feature = "serve")]
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "rivet",
    bin_name = "rivet",
    version,
    about = "Rivet's tabular commands: preprocessing pipelines and batch scoring"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Fit preprocessing pipelines and transform tables into feature tensors.
    #[command(subcommand)]
    Prep(prep::PrepCommand),
    /// Score a table: stream it through a fitted pipeline and a model in batches and write
    /// the predictions (CSV or Parquet) beside an id column.
    Predict(prep::PredictArgs),
    /// `rivet serve` for a repository whose models take raw rows through their pipelines
    /// (`rivet serve` runs this when the repository holds a pipeline).
    #[cfg(feature = "serve")]
    Serve(serve::ServeArgs),
}

fn main() -> ExitCode {
    // Batches reuse the memory the previous batch freed.
    rivet::memory::keep_freed_memory();
    let cli = Cli::parse();
    match &cli.command {
        Command::Prep(command) => prep::prep(command),
        Command::Predict(args) => {
            if let Some(n) = args.load.threads {
                // Before any thread pool exists; the process is still single-threaded.
                std::env::set_var("RAYON_NUM_THREADS", n.to_string());
            }
            prep::predict(args)
        }
        #[cfg(feature = "serve")]
        Command::Serve(args) => serve::serve(args, Some(rows::finder())),
    }
}
