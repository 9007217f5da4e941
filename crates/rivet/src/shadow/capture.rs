//! The capture directory: divergent requests written whole or not at all, within limits.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rivet_core::{npy, Error, Result, Tensor};

use super::{OutputComparison, ShadowStats};

/// Where and how much a shadow captures.
#[derive(Debug, Clone)]
pub struct CaptureOptions {
    /// The capture directory: one folder per divergent request.
    pub dir: PathBuf,
    /// The most captures kept; the oldest go first.
    pub max_count: usize,
    /// The most bytes the captures may take; the oldest go first.
    pub max_bytes: u64,
}

impl CaptureOptions {
    /// Captures into `dir`, keeping at most 100 requests and 256 MiB.
    pub fn new(dir: impl Into<PathBuf>) -> CaptureOptions {
        CaptureOptions { dir: dir.into(), max_count: 100, max_bytes: 256 << 20 }
    }
}

/// The capture directory: one folder per divergent request, named by a sequence number, and
/// `stats.json`.
pub(super) struct Captures {
    options: CaptureOptions,
    /// The folders kept, oldest first, with their bytes.
    kept: VecDeque<(PathBuf, u64)>,
    bytes: u64,
    next: u64,
}

/// One capture's record (`record.json` in its folder).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CaptureRecord {
    /// The capture's sequence number (its folder's name).
    pub seq: u64,
    /// When the candidate's answer was compared, in milliseconds since the Unix epoch.
    pub time_unix_ms: u64,
    /// The request's id, where the caller gave one.
    pub request_id: Option<String>,
    /// Each output's figures.
    pub outputs: Vec<OutputComparison>,
    /// Tensors left out of the capture (bf16 has no .npy form), with why.
    pub missing: Vec<String>,
}

impl Captures {
    pub(super) fn open(options: &CaptureOptions) -> Result<Captures> {
        let dir = &options.dir;
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::file(dir, format!("cannot make the capture directory: {e}")))?;
        let mut found: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
            .map_err(|e| Error::file(dir, e))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with(".tmp-") {
                    // A capture a kill interrupted: never completed, so never counted.
                    let _ = std::fs::remove_dir_all(e.path());
                    return None;
                }
                name.parse::<u64>().ok().map(|n| (n, e.path()))
            })
            .collect();
        found.sort();
        let mut captures = Captures {
            options: options.clone(),
            kept: VecDeque::new(),
            bytes: 0,
            next: found.last().map_or(0, |f| f.0 + 1),
        };
        for (_, path) in found {
            let size = dir_bytes(&path);
            captures.bytes += size;
            captures.kept.push_back((path, size));
        }
        captures.evict();
        Ok(captures)
    }

    /// Writes one capture into a temporary folder, then renames it into place: a capture is
    /// complete or absent, whenever the process stops.
    pub(super) fn write(
        &mut self,
        inputs: &[Tensor],
        primary: &[Tensor],
        candidate: &[Tensor],
        names: &[String],
        outputs: &[OutputComparison],
        request_id: Option<&str>,
    ) -> Result<()> {
        let seq = self.next;
        self.next += 1;
        let tmp = self.options.dir.join(format!(".tmp-{seq:08}"));
        let done = self.options.dir.join(format!("{seq:08}"));
        std::fs::create_dir_all(&tmp).map_err(|e| Error::file(&tmp, e))?;
        let mut missing = Vec::new();
        let mut put = |file: String, t: &Tensor| {
            if let Err(e) = npy::write_npy(&tmp.join(&file), t) {
                missing.push(format!("{file}: {e}"));
            }
        };
        for (i, t) in inputs.iter().enumerate() {
            put(format!("input_{i}.npy"), t);
        }
        for (i, (p, c)) in primary.iter().zip(candidate).enumerate() {
            let name = names.get(i).cloned().unwrap_or_else(|| format!("output_{i}"));
            put(format!("primary.{name}.npy"), p);
            put(format!("candidate.{name}.npy"), c);
        }
        let record = CaptureRecord {
            seq,
            time_unix_ms: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64),
            request_id: request_id.map(str::to_owned),
            outputs: outputs.to_vec(),
            missing,
        };
        let line = serde_json::to_string(&record).map_err(|e| Error::file(&tmp, e))?;
        std::fs::write(tmp.join("record.json"), line + "\n").map_err(|e| Error::file(&tmp, e))?;
        std::fs::rename(&tmp, &done).map_err(|e| Error::file(&done, e))?;
        let size = dir_bytes(&done);
        self.bytes += size;
        self.kept.push_back((done, size));
        self.evict();
        Ok(())
    }

    /// Writes `stats` as `stats.json`, through a temporary file renamed into place. Best
    /// effort: the counts stay readable through [`Shadow::stats`](super::Shadow::stats)
    /// whatever happens here.
    pub(super) fn write_stats(&self, stats: &ShadowStats) {
        let tmp = self.options.dir.join(".stats.json.tmp");
        if let Ok(text) = serde_json::to_string_pretty(stats) {
            if std::fs::write(&tmp, text + "\n").is_ok() {
                let _ = std::fs::rename(&tmp, self.options.dir.join("stats.json"));
            }
        }
    }

    /// Removes the oldest captures until both limits hold.
    fn evict(&mut self) {
        while self.kept.len() > self.options.max_count
            || (self.bytes > self.options.max_bytes && !self.kept.is_empty())
        {
            if let Some((path, size)) = self.kept.pop_front() {
                let _ = std::fs::remove_dir_all(&path);
                self.bytes -= size;
            }
        }
    }
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum())
        .unwrap_or(0)
}
