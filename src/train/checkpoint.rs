//! Checkpoints: tensors and a JSON record of where training stands, in one
//! safetensors file written atomically (temp file, fsync, rename).
use crate::ops::simd::Machine;
use anyhow::{Context, Result};
use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use std::collections::HashMap;
use std::path::Path;

const META_KEY: &str = "enas";

/// Writes `tensors` and `meta` to `path` so that a crash leaves either the old file or the new one.
pub fn save_atomic(path: &Path, tensors: &HashMap<String, Tensor>, meta: &serde_json::Value) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut sorted: Vec<(&String, &Tensor)> = tensors.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let info = HashMap::from([(META_KEY.to_string(), meta.to_string())]);
    safetensors::serialize_to_file(sorted, Some(info), &tmp).with_context(|| format!("{}: cannot write", tmp.display()))?;
    readable(&tmp)?;
    std::fs::File::open(&tmp).and_then(|f| f.sync_all()).with_context(|| format!("{}: cannot sync", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("{}: cannot move into place", path.display()))?;
    if let Some(dir) = path.parent() {
        // Make the rename itself durable.
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(())
}

/// Gives `path` the mode of a file `std::fs::write` creates under the usual
/// umask (0644): safetensors writes its files 0600, so a model or checkpoint
/// could not be read by the rest of a group that shares the runs.
pub fn readable(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).with_context(|| format!("{}: cannot set its permissions", path.display()))?;
    }
    Ok(())
}

pub fn load(path: &Path, device: &Device) -> Result<(HashMap<String, Tensor>, serde_json::Value)> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| anyhow::anyhow!("{}: not a safetensors file: {e}", path.display()))?;
    let meta = header
        .metadata()
        .as_ref()
        .and_then(|m| m.get(META_KEY))
        .ok_or_else(|| anyhow::anyhow!("{}: not an enas checkpoint (no '{META_KEY}' metadata)", path.display()))?;
    let meta = serde_json::from_str(meta).with_context(|| format!("{}: bad checkpoint metadata", path.display()))?;
    let tensors = candle_core::safetensors::load_buffer(&bytes, device).with_context(|| format!("{}: bad tensors", path.display()))?;
    Ok((tensors, meta))
}

/// Every variable of `varmap` (running statistics included), under `prefix`.
pub fn varmap_tensors(varmap: &VarMap, prefix: &str) -> Result<HashMap<String, Tensor>> {
    let mut out = HashMap::new();
    for (name, var) in crate::model::init::sorted_vars(varmap) {
        out.insert(format!("{prefix}{name}"), var.as_tensor().copy()?);
    }
    Ok(out)
}

/// Fills every variable of `varmap` from `tensors[prefix + name]`; all must be present.
pub fn load_varmap(varmap: &VarMap, tensors: &HashMap<String, Tensor>, prefix: &str, origin: &Path) -> Result<()> {
    for (name, var) in crate::model::init::sorted_vars(varmap) {
        let key = format!("{prefix}{name}");
        let t = tensors.get(&key).ok_or_else(|| anyhow::anyhow!("{}: no tensor '{key}' (different architecture or size?)", origin.display()))?;
        if t.dims() != var.dims() {
            anyhow::bail!("{}: tensor '{key}' has shape {:?}, the model expects {:?}", origin.display(), t.dims(), var.dims());
        }
        var.set(t)?;
    }
    Ok(())
}

/// Readies `out` for a run with settings `cfg`: refuses to overwrite an existing
/// run unless resuming, refuses to resume with other settings (naming them),
/// writes `config.json` (the settings, the machine and the device the run
/// started on).
pub fn prepare_run_dir<T: serde::Serialize>(out: &Path, cfg: &T, resume: bool, checkpoint: &str, device: &Device) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create output directory", out.display()))?;
    let config_path = out.join("config.json");
    // Compared as values parsed alike, so floats round-trip exactly.
    let mut record = serde_json::from_str::<serde_json::Value>(&serde_json::to_string(cfg)?)?;
    let mut machine = serde_json::to_value(Machine::current())?;
    let mut device_name = serde_json::json!(crate::ops::device::name(device));
    if resume {
        if let Ok(old) = std::fs::read_to_string(&config_path) {
            let mut old: serde_json::Value = serde_json::from_str(&old).with_context(|| format!("{}: not valid JSON", config_path.display()))?;
            let started_on = old.as_object_mut().and_then(|o| o.remove(MACHINE));
            let started_device = old.as_object_mut().and_then(|o| o.remove(DEVICE));
            // What a run records without it setting any number (its preset's name) is not compared:
            // runs started before it was recorded resume.
            let mut compared = record.clone();
            for o in [old.as_object_mut(), compared.as_object_mut()].into_iter().flatten() {
                o.remove(RECORDED_ONLY);
            }
            let changed = differences(&old, &compared, "");
            if !changed.is_empty() {
                anyhow::bail!(
                    "{}: the run there was started with other settings ({}); resume it with `--resume --out {}` alone to keep them, or choose another --out",
                    config_path.display(),
                    changed.join("; "),
                    out.display()
                );
            }
            if let Some(started_on) = started_on {
                let kernels = |m: &serde_json::Value| m.get("kernels").and_then(|k| k.as_str()).unwrap_or("unknown").to_string();
                if kernels(&started_on) != kernels(&machine) {
                    eprintln!(
                        "note: this run started with the {} kernel set and continues with {}: its numbers will differ in the last bits from an uninterrupted run's",
                        kernels(&started_on),
                        kernels(&machine)
                    );
                }
                machine = started_on;
            }
            if let Some(started_device) = started_device {
                if started_device != device_name {
                    eprintln!("note: this run started on {started_device} and continues on {device_name}: its numbers will differ from an uninterrupted run's");
                }
                device_name = started_device;
            }
        }
    } else if out.join(checkpoint).exists() {
        anyhow::bail!("{}: a run is already there; pass --resume to continue it or choose another --out", out.display());
    }
    if let Some(o) = record.as_object_mut() {
        o.insert(MACHINE.into(), machine);
        o.insert(DEVICE.into(), device_name);
    }
    write_atomic(&config_path, &serde_json::to_string_pretty(&record)?)
}

/// The settings that differ between two records, as `path: then -> now`.
pub(crate) fn differences(then: &serde_json::Value, now: &serde_json::Value, path: &str) -> Vec<String> {
    use serde_json::Value;
    let at = |key: &str| if path.is_empty() { key.to_string() } else { format!("{path}.{key}") };
    match (then, now) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter().flat_map(|k| differences(a.get(k).unwrap_or(&Value::Null), b.get(k).unwrap_or(&Value::Null), &at(k))).collect()
        }
        _ if then == now => Vec::new(),
        _ => vec![format!("{}: {then} then, {now} now", if path.is_empty() { "settings" } else { path })],
    }
}

/// The key of `config.json` that records the CPU and kernel set a run started on.
pub const MACHINE: &str = "machine";
/// The key of `config.json` that names the preset a run's settings came from (they are recorded in full beside it).
const RECORDED_ONLY: &str = "preset";
/// The key of `config.json` that records the device a run started on.
pub const DEVICE: &str = "device";

/// The file of a run directory that holds, a line each, the commands that worked on it.
pub const COMMANDS: &str = "command.txt";

/// The command lines stored in `dir`, split into words.
pub fn stored_commands(dir: &Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(dir.join(COMMANDS)).unwrap_or_default();
    text.lines().filter_map(|l| shell_words::split(l).ok()).filter(|w| !w.is_empty()).collect()
}

/// Writes `text` to `path` atomically.
pub fn write_atomic(path: &Path, text: &str) -> Result<()> {
    write_bytes_atomic(path, text.as_bytes())
}

/// `write_atomic` for bytes.
pub fn write_bytes_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("{}: cannot write", tmp.display()))?;
    std::fs::File::open(&tmp).and_then(|f| f.sync_all()).with_context(|| format!("{}: cannot sync", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("{}: cannot move into place", path.display()))?;
    Ok(())
}
