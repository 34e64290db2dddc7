//! What the commands that write a run directory (`train`, `search`, `retrain`)
//! do around their work: record the command as the run starts, continue a run
//! from `--resume --out DIR` alone, say which device computes, and on Ctrl-C
//! say how to resume.
use crate::train::checkpoint::{stored_commands as stored, COMMANDS};
use anyhow::Result;
use candle_core::Device;
use std::path::Path;

/// Flags of one invocation, not settings of the run: left out when a stored command is replayed.
const INVOCATION_FLAGS: [&str; 4] = ["--quiet", "--json", "--download", "--resume"];
const INVOCATION_OPTIONS: [&str; 1] = ["--stop-after"];

/// `words` without the flags named in `skip`; a skipped option of
/// `INVOCATION_OPTIONS` takes its value with it (unless given as `--flag=value`).
fn without(words: &[String], skip: &[&str]) -> Vec<String> {
    let mut kept = Vec::new();
    let mut rest = words.iter();
    while let Some(w) = rest.next() {
        let name = w.split('=').next().unwrap_or(w);
        if skip.contains(&name) {
            if INVOCATION_OPTIONS.contains(&name) && !w.contains('=') {
                rest.next();
            }
            continue;
        }
        kept.push(w.clone());
    }
    kept
}

/// The subcommand of a command line (`enas train ...` gives `train`).
fn subcommand(line: &[String]) -> Option<&str> {
    line.get(1).map(String::as_str)
}

/// The value of `--out` in `args`.
fn out_of(args: &[String]) -> Option<&str> {
    args.iter().enumerate().rev().find_map(|(i, a)| match a.strip_prefix("--out=") {
        Some(v) => Some(v),
        None if a == "--out" => args.get(i + 1).map(String::as_str),
        None => None,
    })
}

/// `args` with the settings a run was started with, when they ask to resume it:
/// `enas train --resume --out DIR` replays DIR's stored `enas train ...` and
/// then the flags given now, which override it (and, where they differ from
/// the run's settings, are refused by the run with the setting named).
pub fn with_stored_settings(args: Vec<String>) -> Vec<String> {
    let sub = subcommand(&args).unwrap_or_default().to_string();
    if !["train", "search", "retrain"].contains(&sub.as_str()) || !args.iter().any(|a| a == "--resume") {
        return args;
    }
    let Some(out) = out_of(&args) else { return args };
    let Some(line) = stored(Path::new(out)).into_iter().find(|l| subcommand(l) == Some(sub.as_str())) else { return args };
    let mut merged = args[..2].to_vec();
    merged.extend(without(&line[2..], &[&INVOCATION_FLAGS[..], &INVOCATION_OPTIONS[..]].concat()));
    merged.extend(args[2..].iter().cloned());
    merged
}

/// Records this invocation (shell-quoted, `--resume` and `--stop-after` left
/// out) in `dir/command.txt`, in place of an earlier line of the same
/// subcommand: one line per command that worked on the run, in order.
pub fn record_command(dir: &Path) -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let mut line = vec!["enas".to_string()];
    line.extend(without(args.get(1..).unwrap_or_default(), &[&["--resume"][..], &INVOCATION_OPTIONS[..]].concat()));
    let sub = subcommand(&line).map(str::to_string);
    let mut lines = stored(dir);
    match lines.iter_mut().find(|l| subcommand(l).map(str::to_string) == sub) {
        Some(old) => *old = line,
        None => lines.push(line),
    }
    let text: String = lines.iter().map(|l| shell_words::join(l) + "\n").collect();
    crate::train::checkpoint::write_atomic(&dir.join(COMMANDS), &text)
}

/// Readies the invocation that writes the run in `out` (whose settings are in
/// `config`; `earlier` holds the settings of stages other commands may have
/// run there, as `enas search` does before `enas train`): says so when there
/// is nothing to resume, records the command when the run starts, names the
/// device, and on Ctrl-C says how to resume.
pub fn begin(out: &Path, config: &Path, earlier: &[&Path], resume: bool, device: &Device, show: bool) -> Result<()> {
    let fresh = !config.exists();
    if resume && fresh && !earlier.iter().any(|p| p.exists()) {
        eprintln!("note: nothing to resume in {}; starting a new run", out.display());
    }
    std::fs::create_dir_all(out).map_err(|e| anyhow::anyhow!("{}: cannot create output directory: {e}", out.display()))?;
    if fresh {
        record_command(out)?;
    }
    if show {
        eprintln!("device: {}", crate::ops::device::describe(device));
    }
    let sub = std::env::args().nth(1).unwrap_or_default();
    let again = shell_words::join(["enas", sub.as_str(), "--resume", "--out", &out.display().to_string()]);
    // Every checkpoint is written to a temporary file and renamed, so stopping at any point leaves the last one whole.
    let _ = ctrlc::set_handler(move || {
        eprintln!("\ninterrupted: resume with {again}");
        std::process::exit(130);
    });
    Ok(())
}
