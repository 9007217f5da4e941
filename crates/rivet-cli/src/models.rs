//! Which model files the command line names, how they group, and which backends run each.

use std::path::PathBuf;

use rivet::{Backend, Error, LoadOptions, Result};

/// Model files named by the arguments, grouped in order: a folder gives one group per twin
/// (same stem, `.pt` and `.onnx`), and the files named one by one on the command line form one
/// group together (so `a/model.pt b/model.onnx` are compared with each other).
pub(crate) fn model_groups(paths: &[PathBuf]) -> Result<Vec<(String, Vec<PathBuf>)>> {
    let mut files = Vec::new();
    let mut named: Vec<PathBuf> = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| Error::file(path, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "pt" || e == "onnx"))
                .collect();
            if found.is_empty() {
                return Err(Error::file(path, "no .pt or .onnx model files in this folder"));
            }
            found
                .sort_by_key(|p| (p.file_stem().map(|s| s.to_owned()), p.extension() != Some("pt".as_ref())));
            files.extend(found);
        } else if path.is_file() {
            if !named.contains(path) {
                named.push(path.clone());
            }
        } else {
            return Err(Error::file(path, "no such model file or folder"));
        }
    }
    let mut groups: Vec<(String, Vec<PathBuf>)> = Vec::new();
    if let Some(first) = named.first() {
        let mut stems: Vec<String> =
            named.iter().filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned())).collect();
        stems.dedup();
        let key =
            if stems.len() == 1 { first.with_extension("").display().to_string() } else { stems.join("+") };
        groups.push((key, named));
    }
    for file in files {
        let key = file.with_extension("").display().to_string();
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, members)) if !members.contains(&file) => members.push(file),
            Some(_) => {}
            None => groups.push((key, vec![file])),
        }
    }
    Ok(groups)
}

/// The backends to run `file` (one of `group`) on: those that read its format, in
/// `Backend::AUTO`'s order, narrowed to `wanted` when that is not empty; plus each backend in
/// `wanted` that claims no format (a user's backend reading its own files, such as a legacy C++
/// scorer's weights). Those go to the files of the group that no format detection claims, or,
/// when every file has a known format, to every file.
pub(crate) fn candidates(
    file: &std::path::Path,
    group: &[PathBuf],
    wanted: &[Backend],
    options: &LoadOptions,
) -> Result<Vec<Backend>> {
    let mut list = Vec::new();
    let format = rivet::format::detect_format(file, "auto");
    if let Ok(format) = format {
        list.extend(
            rivet::backends_for(format, options)
                .into_iter()
                .filter(|b| wanted.is_empty() || wanted.contains(b)),
        );
    }
    let unclaimed = |p: &PathBuf| rivet::format::detect_format(p, "auto").is_err();
    if format.is_err() || !group.iter().any(unclaimed) {
        for name in wanted {
            if !list.contains(name) && rivet::backend(name)?.formats().is_empty() {
                list.push(name.clone());
            }
        }
    }
    match format {
        Err(err) if list.is_empty() => Err(err),
        _ => Ok(list),
    }
}
