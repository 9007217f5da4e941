//! Running one measurement in a child process (`rivet bench-worker`).

use std::io::Write;
use std::process::{Command, Stdio};

use super::worker::{Job, JobResult};

/// Runs one job in a child process.
pub(super) fn run_child(job: &Job, threads: Option<usize>) -> std::result::Result<JobResult, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the rivet executable: {e}"))?;
    let mut command = Command::new(exe);
    command.arg("bench-worker").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    if let Some(n) = threads {
        command.env("RAYON_NUM_THREADS", n.to_string());
    }
    let mut child = command.spawn().map_err(|e| format!("cannot start a bench worker: {e}"))?;
    let json = serde_json::to_vec(job).map_err(|e| e.to_string())?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(&json).map_err(|e| format!("cannot send the job to its worker: {e}"))?;
    }
    let output = child.wait_with_output().map_err(|e| format!("bench worker: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    match serde_json::from_str::<JobResult>(stdout.trim()) {
        Ok(result) if output.status.success() => Ok(result),
        _ => {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no message");
            Err(format!("the worker process {}: {}", output.status, rivet::one_line(last)))
        }
    }
}
