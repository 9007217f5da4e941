//! Running one measurement in a child process (`rivet bench-worker`).

use std::io::Write;
use std::process::{Command, Stdio};

use super::worker::{Job, JobResult};

/// Why a job's worker process gave no result.
#[derive(Debug)]
pub(super) enum WorkerError {
    /// A step of starting or talking to the worker failed.
    Io(&'static str, std::io::Error),
    /// The job could not be encoded.
    Encode(serde_json::Error),
    /// The worker exited without a result: its status and last line of stderr.
    Failed(std::process::ExitStatus, String),
}

impl std::fmt::Display for WorkerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WorkerError::Io(what, e) => write!(f, "{what}: {e}"),
            WorkerError::Encode(e) => write!(f, "cannot encode the job: {e}"),
            WorkerError::Failed(status, last) => write!(f, "the worker process {status}: {last}"),
        }
    }
}

/// Runs one job in a child process.
pub(super) fn run_child(job: &Job, threads: Option<usize>) -> std::result::Result<JobResult, WorkerError> {
    let exe = std::env::current_exe().map_err(|e| WorkerError::Io("cannot find the rivet executable", e))?;
    let mut command = Command::new(exe);
    command.arg("bench-worker").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    if let Some(n) = threads {
        command.env("RAYON_NUM_THREADS", n.to_string());
    }
    let mut child = command.spawn().map_err(|e| WorkerError::Io("cannot start a bench worker", e))?;
    let json = serde_json::to_vec(job).map_err(WorkerError::Encode)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(&json).map_err(|e| WorkerError::Io("cannot send the job to its worker", e))?;
    }
    let output = child.wait_with_output().map_err(|e| WorkerError::Io("bench worker", e))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    match serde_json::from_str::<JobResult>(stdout.trim()) {
        Ok(result) if output.status.success() => Ok(result),
        _ => {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no message");
            Err(WorkerError::Failed(output.status, rivet::one_line(last)))
        }
    }
}
