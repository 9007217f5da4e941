//! The model repository while the server runs: its folders, the versions each serves, and how
//! models are loaded, reloaded and unloaded without stopping (Triton's model control modes and
//! repository extension).
//!
//! A folder `DIR/NAME/` holds either a model file (served as the config's `version`) or
//! numbered version folders `DIR/NAME/1/`, `DIR/NAME/2/`, … each with a model file, of which
//! the config's `version_policy` chooses. A load builds every chosen version beside the ones
//! serving and swaps them in only once they are ready: requests are served throughout, and those
//! already holding the old version finish on it. A version that fails to load leaves the one
//! it would replace serving, with the reason in the index. An unload takes the model out at
//! once; what is queued and running finishes, later requests get 503 / UNAVAILABLE.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use crate::config::ModelConfig;
use crate::error::{ServeError, StartError};
use crate::metrics::Metrics;
use crate::repository::{ModelEntry, Shadowing};
use crate::rows::PipelineFinder;

/// How models are loaded and unloaded while the server runs (`--model-control-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ControlMode {
    /// Every model loads at start; the repository never changes (load and unload are refused).
    #[default]
    None,
    /// Models load at start only when named (`--load-model`), then on request: the repository
    /// extension's load and unload.
    Explicit,
    /// Every model loads at start, and the repository is rescanned every few seconds: new
    /// folders load, changed ones reload, removed ones unload.
    Poll,
}

impl ControlMode {
    /// The mode's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            ControlMode::None => "none",
            ControlMode::Explicit => "explicit",
            ControlMode::Poll => "poll",
        }
    }
}

/// One line of the repository index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    /// The model's name.
    pub name: String,
    /// The version (empty for a model that is not loaded).
    pub version: String,
    /// `READY` or `UNAVAILABLE`.
    pub state: &'static str,
    /// Why it is not ready, or why a reload failed while this version kept serving.
    pub reason: String,
}

/// What a model folder held when it was loaded: its config and model files, with their sizes
/// and modification times (the files of the folder and of its version folders, not deeper, so
/// that a capture directory inside it does not count).
type Fingerprint = Vec<(PathBuf, u64, Option<SystemTime>)>;

/// One model folder of the repository.
#[derive(Clone, Default)]
struct Slot {
    /// The versions served, by ascending number (one for a folder without version folders).
    versions: Vec<Arc<ModelEntry>>,
    fingerprint: Fingerprint,
    /// Why the model is not loaded, or why its last reload failed while older versions serve.
    reason: Option<String>,
    /// Not loaded (never, or unloaded): requests get 503.
    unloaded: bool,
}

/// Every model of the repository, by name.
pub struct Repository {
    dir: PathBuf,
    mode: ControlMode,
    metrics: Arc<Metrics>,
    pipelines: Option<PipelineFinder>,
    slots: RwLock<BTreeMap<String, Slot>>,
    /// Loads and unloads, one at a time.
    control: Mutex<()>,
}

impl Repository {
    /// Reads the repository `dir` and loads its models (in explicit mode, those `load` names;
    /// `*` names them all). A model that fails to load is kept with its reason; an unreadable
    /// `dir`, or a `load` name without a folder, is an error. Models with a preprocessing
    /// pipeline beside their file load it through `pipelines`.
    pub fn open(
        dir: &Path,
        mode: ControlMode,
        load: &[String],
        metrics: Arc<Metrics>,
        pipelines: Option<PipelineFinder>,
    ) -> Result<Repository, StartError> {
        let repository = Repository {
            dir: dir.to_path_buf(),
            mode,
            metrics,
            pipelines,
            slots: RwLock::new(BTreeMap::new()),
            control: Mutex::new(()),
        };
        let folders = repository.folders()?;
        for name in load {
            if name != "*" && !folders.contains(name) {
                return Err(StartError::ModelFile(format!(
                    "--load-model {name}: the repository {} has no folder {name}",
                    dir.display()
                )));
            }
        }
        let mut slots = BTreeMap::new();
        for name in &folders {
            let wanted = mode != ControlMode::Explicit || load.iter().any(|l| l == "*" || l == name);
            let slot = if wanted {
                repository.load_slot(name, None)
            } else {
                Slot { unloaded: true, reason: Some("not loaded".into()), ..Slot::default() }
            };
            slots.insert(name.clone(), slot);
        }
        // Shadows name other models, so they attach once every model has loaded. With mode
        // none the repository never changes: a shadow that cannot attach keeps its primary
        // from serving, with the reason. In the other modes its candidate may load later: the
        // primary serves without it until then.
        for name in &folders {
            let Some(slot) = slots.get(name) else { continue };
            let mut failed = Vec::new();
            for entry in &slot.versions {
                if let Err(message) = repository.attach(&slots, entry) {
                    if mode == ControlMode::None {
                        failed.push((entry.config.version.clone(), message));
                    } else {
                        tracing::warn!(model = %entry.name, %message, "serving without its shadow");
                    }
                }
            }
            if let Some(slot) = slots.get_mut(name) {
                for (version, message) in failed {
                    for entry in slot.versions.iter_mut().filter(|e| e.config.version == version) {
                        let path = dir.join(name);
                        let mut broken =
                            ModelEntry::failed(name, StartError::Config { path, message: message.clone() });
                        broken.config = entry.config.clone();
                        *entry = Arc::new(broken);
                    }
                }
            }
        }
        *repository.slots.write().unwrap_or_else(|e| e.into_inner()) = slots;
        Ok(repository)
    }

    /// The model control mode.
    pub fn mode(&self) -> ControlMode {
        self.mode
    }

    /// The names of the repository's model folders, sorted.
    fn folders(&self) -> Result<Vec<String>, StartError> {
        let entries = std::fs::read_dir(&self.dir)
            .map_err(|source| StartError::Repository { path: self.dir.clone(), source })?;
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .filter(|name| !name.starts_with('.'))
            .collect();
        names.sort();
        Ok(names)
    }

    /// Loads folder `name`. With `previous` (a reload), a version that fails to load while the
    /// same version served before keeps the old one, and the reason is kept for the index.
    fn load_slot(&self, name: &str, previous: Option<&Slot>) -> Slot {
        let dir = self.dir.join(name);
        let fingerprint = fingerprint(&dir);
        let config = match ModelConfig::read(&dir) {
            Ok(config) => config,
            Err(reason) => return self.failed_load(name, previous, reason, fingerprint),
        };
        let versions = match version_folders(&dir) {
            Ok(found) if found.is_empty() => vec![(config.version.clone(), dir.clone())],
            Ok(found) => match config.version_policy.select(&found) {
                Ok(chosen) => chosen.into_iter().map(|v| (v.to_string(), dir.join(v.to_string()))).collect(),
                Err(e) => {
                    let reason = StartError::Config { path: dir.clone(), message: e.0 };
                    return self.failed_load(name, previous, reason, fingerprint);
                }
            },
            Err(reason) => return self.failed_load(name, previous, reason, fingerprint),
        };
        let mut loaded = Vec::new();
        let mut reasons = Vec::new();
        for (version, folder) in versions {
            let config = ModelConfig { version: version.clone(), ..config.clone() };
            let entry = ModelEntry::load(name, &folder, config, &self.metrics, self.pipelines.as_ref());
            match (&entry.state, previous.and_then(|p| ready_version(p, &version))) {
                (Err(reason), Some(old)) => {
                    reasons.push(format!(
                        "version {version} failed to reload, the previous one serves: {reason}"
                    ));
                    loaded.push(old);
                }
                _ => loaded.push(Arc::new(entry)),
            }
        }
        Slot {
            versions: loaded,
            fingerprint,
            reason: (!reasons.is_empty()).then(|| reasons.join("; ")),
            unloaded: false,
        }
    }

    /// A folder whose config or layout cannot be read: the previous versions keep serving if
    /// there are any, else the model is not ready.
    fn failed_load(
        &self,
        name: &str,
        previous: Option<&Slot>,
        reason: StartError,
        fingerprint: Fingerprint,
    ) -> Slot {
        match previous {
            Some(p) if !p.unloaded && p.versions.iter().any(|e| e.state.is_ok()) => Slot {
                versions: p.versions.clone(),
                fingerprint,
                reason: Some(format!("the reload failed, the previous versions serve: {reason}")),
                unloaded: false,
            },
            _ => Slot {
                versions: vec![Arc::new(ModelEntry::failed(name, reason))],
                fingerprint,
                ..Slot::default()
            },
        }
    }

    /// Attaches the shadow `entry`'s config names, to the candidate's latest ready version.
    fn attach(&self, slots: &BTreeMap<String, Slot>, entry: &ModelEntry) -> Result<(), String> {
        let (Some(config), Ok(primary)) = (&entry.config.shadow, &entry.state) else { return Ok(()) };
        let candidate = slots.get(&config.model).filter(|s| !s.unloaded).and_then(latest);
        let shadowing = Shadowing::attach(
            &entry.name,
            primary,
            config,
            &self.dir.join(&entry.name),
            candidate.as_deref(),
            &self.metrics,
        );
        match shadowing {
            Ok(shadowing) => {
                primary.set_shadow(Some(shadowing));
                Ok(())
            }
            Err(message) => {
                primary.set_shadow(None);
                Err(message)
            }
        }
    }

    /// Re-attaches the shadows of `changed` and of every model it shadows. While serving, a
    /// shadow that cannot attach leaves its primary serving without it, and says so in the log.
    fn reattach(&self, slots: &BTreeMap<String, Slot>, changed: &str) {
        for slot in slots.values().filter(|s| !s.unloaded) {
            for entry in &slot.versions {
                let Some(config) = &entry.config.shadow else { continue };
                if entry.name != changed && config.model != changed {
                    continue;
                }
                if let Err(message) = self.attach(slots, entry) {
                    tracing::warn!(model = %entry.name, %message, "serving without its shadow");
                }
            }
        }
    }

    /// The model `name`: the version asked for, or with none (or empty) its latest ready one.
    pub fn get(&self, name: &str, version: Option<&str>) -> Result<Arc<ModelEntry>, ServeError> {
        let slots = self.slots.read().unwrap_or_else(|e| e.into_inner());
        let slot = slots
            .get(name)
            .ok_or_else(|| ServeError::NotFound(format!("model \"{name}\" is not in the repository")))?;
        if slot.unloaded {
            let reason = slot.reason.as_deref().unwrap_or("not loaded");
            return Err(ServeError::Unavailable(format!("model \"{name}\" is unavailable: {reason}")));
        }
        match version.filter(|v| !v.is_empty()) {
            None => {
                latest(slot).ok_or_else(|| ServeError::NotFound(format!("model \"{name}\" has no version")))
            }
            Some(v) => slot.versions.iter().find(|e| e.config.version == v).cloned().ok_or_else(|| {
                ServeError::NotFound(format!(
                    "model \"{name}\" has no version \"{v}\" (served: {})",
                    slot.versions
                        .iter()
                        .map(|e| format!("\"{}\"", e.config.version))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            }),
        }
    }

    /// The versions model `name` serves.
    pub fn versions(&self, name: &str) -> Vec<String> {
        let slots = self.slots.read().unwrap_or_else(|e| e.into_inner());
        slots
            .get(name)
            .map_or_else(Vec::new, |s| s.versions.iter().map(|e| e.config.version.clone()).collect())
    }

    /// Every loaded version of every model, by name then version.
    pub fn models(&self) -> Vec<Arc<ModelEntry>> {
        let slots = self.slots.read().unwrap_or_else(|e| e.into_inner());
        slots.values().filter(|s| !s.unloaded).flat_map(|s| s.versions.iter().cloned()).collect()
    }

    /// Whether every loaded model is ready (Triton's strict readiness).
    pub fn all_ready(&self) -> bool {
        self.models().iter().all(|m| m.state.is_ok())
    }

    /// The repository index: every folder, and each version it serves with its state.
    pub fn index(&self, ready_only: bool) -> Vec<IndexEntry> {
        let slots = self.slots.read().unwrap_or_else(|e| e.into_inner());
        let mut index = Vec::new();
        for (name, slot) in slots.iter() {
            let note = slot.reason.clone().unwrap_or_default();
            if slot.unloaded {
                if !ready_only {
                    index.push(IndexEntry {
                        name: name.clone(),
                        version: String::new(),
                        state: "UNAVAILABLE",
                        reason: note,
                    });
                }
                continue;
            }
            for entry in &slot.versions {
                let (state, reason) = match &entry.state {
                    Ok(_) => ("READY", note.clone()),
                    Err(e) => ("UNAVAILABLE", e.to_string()),
                };
                if ready_only && state != "READY" {
                    continue;
                }
                index.push(IndexEntry {
                    name: name.clone(),
                    version: entry.config.version.clone(),
                    state,
                    reason,
                });
            }
        }
        index
    }

    fn refuse_unless_explicit(&self, what: &str) -> Result<(), ServeError> {
        match self.mode {
            ControlMode::Explicit => Ok(()),
            mode => Err(ServeError::bad(format!(
                "cannot {what} models: the model control mode is {}; start rivet serve with \
                 --model-control-mode explicit to {what} them by request",
                mode.name()
            ))),
        }
    }

    /// Loads, or reloads, model `name` from its folder (blocking: call off the async threads).
    /// Fails, naming why, when no version of it is ready afterwards, or when a version that
    /// served before failed to reload (that one keeps serving).
    pub fn load(&self, name: &str) -> Result<(), ServeError> {
        self.refuse_unless_explicit("load")?;
        if !self.folders().map_err(|e| ServeError::Internal(e.to_string()))?.iter().any(|f| f == name) {
            return Err(ServeError::NotFound(format!("model \"{name}\" is not in the repository")));
        }
        self.reload(name);
        let slots = self.slots.read().unwrap_or_else(|e| e.into_inner());
        let slot = &slots[name];
        if let Some(reason) = &slot.reason {
            return Err(ServeError::Internal(format!("model \"{name}\": {reason}")));
        }
        if let Some(Err(reason)) = slot.versions.iter().map(|e| &e.state).find(|s| s.is_err()) {
            return Err(ServeError::Internal(format!("failed to load model \"{name}\": {reason}")));
        }
        Ok(())
    }

    /// Loads folder `name` again and swaps it in.
    fn reload(&self, name: &str) {
        let _one_at_a_time = self.control.lock().unwrap_or_else(|e| e.into_inner());
        let previous = self.slots.read().unwrap_or_else(|e| e.into_inner()).get(name).cloned();
        let slot = self.load_slot(name, previous.as_ref());
        let replaced = {
            let mut slots = self.slots.write().unwrap_or_else(|e| e.into_inner());
            let replaced = slots.insert(name.to_owned(), slot);
            self.reattach(&slots, name);
            replaced
        };
        // The versions replaced finish what they hold once the requests using them end.
        drop(replaced);
        tracing::info!(model = name, "loaded");
    }

    /// Unloads model `name`: it leaves the repository's served models at once; requests
    /// already queued or running finish, later ones get 503 / UNAVAILABLE.
    pub fn unload(&self, name: &str) -> Result<(), ServeError> {
        self.refuse_unless_explicit("unload")?;
        self.take_out(name, false)
    }

    fn take_out(&self, name: &str, forget: bool) -> Result<(), ServeError> {
        let _one_at_a_time = self.control.lock().unwrap_or_else(|e| e.into_inner());
        let removed = {
            let mut slots = self.slots.write().unwrap_or_else(|e| e.into_inner());
            let removed = if forget {
                slots.remove(name)
            } else {
                let slot = slots.get_mut(name).ok_or_else(|| {
                    ServeError::NotFound(format!("model \"{name}\" is not in the repository"))
                })?;
                let was = std::mem::replace(
                    slot,
                    Slot { unloaded: true, reason: Some("unloaded".into()), ..Slot::default() },
                );
                Some(was)
            };
            self.reattach(&slots, name);
            removed
        };
        drop(removed);
        tracing::info!(model = name, "unloaded");
        Ok(())
    }

    /// One poll: loads new folders, reloads folders whose files changed, and takes out those
    /// removed (blocking: call off the async threads).
    pub fn poll(&self) {
        let Ok(folders) = self.folders() else {
            tracing::warn!(repository = %self.dir.display(), "cannot read the repository; keeping the models loaded");
            return;
        };
        let known: Vec<(String, Fingerprint)> = self
            .slots
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(name, slot)| (name.clone(), slot.fingerprint.clone()))
            .collect();
        for (name, seen) in &known {
            if !folders.contains(name) {
                let _ = self.take_out(name, true);
            } else if fingerprint(&self.dir.join(name)) != *seen {
                self.reload(name);
            }
        }
        for name in folders.iter().filter(|f| !known.iter().any(|(k, _)| k == *f)) {
            self.reload(name);
        }
    }
}

/// The latest ready version of `slot`, or its latest when none is ready.
fn latest(slot: &Slot) -> Option<Arc<ModelEntry>> {
    slot.versions.iter().rev().find(|e| e.state.is_ok()).or(slot.versions.last()).cloned()
}

fn ready_version(slot: &Slot, version: &str) -> Option<Arc<ModelEntry>> {
    if slot.unloaded {
        return None;
    }
    slot.versions.iter().find(|e| e.config.version == version && e.state.is_ok()).cloned()
}

/// The numbered version folders in `dir`, ascending.
fn version_folders(dir: &Path) -> Result<Vec<u64>, StartError> {
    let entries =
        std::fs::read_dir(dir).map_err(|source| StartError::Io { path: dir.to_path_buf(), source })?;
    let mut found: Vec<u64> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    found.sort_unstable();
    Ok(found)
}

fn fingerprint(dir: &Path) -> Fingerprint {
    let mut files = Vec::new();
    let mut add = |folder: &Path, prefix: &Path| {
        let Ok(entries) = std::fs::read_dir(folder) else { return };
        for entry in entries.filter_map(|e| e.ok()) {
            // Through symbolic links: a link retargeted at another file is a change.
            if let Ok(meta) = std::fs::metadata(entry.path()) {
                if meta.is_file() {
                    files.push((prefix.join(entry.file_name()), meta.len(), meta.modified().ok()));
                }
            }
        }
    };
    add(dir, Path::new(""));
    if let Ok(versions) = version_folders(dir) {
        for v in versions {
            add(&dir.join(v.to_string()), Path::new(&v.to_string()));
        }
    }
    files.sort();
    files
}
