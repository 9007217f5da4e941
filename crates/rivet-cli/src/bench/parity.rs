//! Output parity of a row: against the case's PyTorch outputs, or the first backend that ran.

use std::collections::HashMap;

use super::args::BenchArgs;
use super::rows::{Parity, Reference, Row};
use super::worker::{self, Job, JobResult};
use super::Source;
use crate::inputs;

/// Compares a job's outputs with the case's PyTorch outputs (resized to the batch) or, without
/// a case, with the first backend that ran the model at this batch. The flag says the row is
/// that first backend: its outputs are the reference, compared with nothing.
pub(super) fn parity(
    args: &BenchArgs,
    src: &Source,
    first_outputs: &mut HashMap<(usize, usize), Reference>,
    key: (usize, usize),
    row: &Row,
    job: &Job,
    result: &JobResult,
) -> Option<(Parity, bool)> {
    let outputs = worker::read_outputs(&job.outputs_dir, &result.outputs).ok()?;
    let (against, reference) = match &src.case_reference {
        Some((case_outputs, note)) => {
            let resized: Option<Vec<_>> = case_outputs
                .iter()
                .map(|(n, t)| inputs::with_batch(t, row.batch).ok().map(|t| (Some(n.clone()), t)))
                .collect();
            (note.clone(), resized?)
        }
        None => match first_outputs.get(&key) {
            Some(reference) => reference.clone(),
            None => {
                let against = format!("{} on {}", row.backend, row.file.display());
                let tensors = outputs.iter().map(|(n, t)| (Some(n.clone()), t.clone())).collect();
                first_outputs.insert(key, (against, tensors));
                let own = Parity {
                    against: "itself: the reference for the other backends at this batch".into(),
                    max_abs_diff: None,
                    max_rel_diff: None,
                    within_tolerance: true,
                    error: None,
                };
                return Some((own, true));
            }
        },
    };
    let parity = match inputs::diff(&outputs, &reference, args.atol, args.rtol) {
        Ok((abs, rel, close)) => Parity {
            against,
            max_abs_diff: Some(abs),
            max_rel_diff: Some(rel),
            within_tolerance: close,
            error: None,
        },
        Err(e) => Parity {
            against,
            max_abs_diff: None,
            max_rel_diff: None,
            within_tolerance: false,
            error: Some(e.to_string()),
        },
    };
    Some((parity, false))
}
