//! Children as subprocesses of this binary (`enas child`), one per slot; each
//! slot has its device and its share of the cores.
use super::{after_failure, log_tail, ExecutorConfig, ExecutorKind, Finished, Job, Retry};
use crate::train::child;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

enum Process {
    Spawned(Child),
    /// Started by an earlier driver on this host and still running: watched by pid.
    Attached(u32),
}

struct Running {
    trial: usize,
    process: Process,
    job: Job,
}

pub struct Local {
    exe: PathBuf,
    slots: Vec<Option<Running>>,
    devices: Vec<String>,
    threads: usize,
}

/// Whether process `pid` is alive and is an `enas child` of trial `trial`.
fn is_child_process(pid: u32, trial: usize) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { return false };
    let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
    let trial = trial.to_string();
    args.iter().any(|a| *a == b"child") && args.windows(2).any(|w| w[0] == b"--trial" && w[1] == trial.as_bytes())
}

impl Local {
    pub fn new(exe: PathBuf, cfg: &ExecutorConfig) -> Local {
        let parallel = cfg.parallel.max(1);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let devices = if cfg.devices.is_empty() { vec!["cpu".to_string()] } else { cfg.devices.clone() };
        Local { exe, slots: (0..parallel).map(|_| None).collect(), devices, threads: cfg.threads.unwrap_or((cores / parallel).max(1)) }
    }

    pub fn in_flight(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
    }

    fn free_slot(&self) -> Result<usize> {
        self.slots.iter().position(|s| s.is_none()).context("local executor: every slot is busy (a driver bug: it submitted more than --parallel)")
    }

    fn spawn(&mut self, run: &Path, trial: usize, mut job: Job) -> Result<()> {
        let slot = self.free_slot()?;
        let device = &self.devices[slot % self.devices.len()];
        let log_path = child::dir(run, trial).join("child.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("{}: cannot open the child's log", log_path.display()))?;
        let process = Command::new(&self.exe)
            .args(["child", "--run"])
            .arg(run)
            .args(["--trial", &trial.to_string(), "--device", device])
            .env("RAYON_NUM_THREADS", self.threads.to_string())
            .env_remove("RUST_BACKTRACE")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {} child", self.exe.display()))?;
        job.id = process.id().to_string();
        job.slot = format!("{slot} ({device}, {} threads)", self.threads);
        job.write(run, trial)?;
        self.slots[slot] = Some(Running { trial, process: Process::Spawned(process), job });
        Ok(())
    }

    pub fn submit(&mut self, run: &Path, trial: usize) -> Result<()> {
        let job = Job::next(run, trial, ExecutorKind::Local);
        self.spawn(run, trial, job)
    }

    /// An earlier driver's child still running on this host: watched again, not started again.
    pub fn attach(&mut self, trial: usize, job: Job) -> bool {
        let Ok(pid) = job.id.parse::<u32>() else { return false };
        let Ok(slot) = self.free_slot() else { return false };
        if job.executor != ExecutorKind::Local || job.host != child::hostname() || !is_child_process(pid, trial) {
            return false;
        }
        self.slots[slot] = Some(Running { trial, process: Process::Attached(pid), job });
        true
    }

    pub fn wait(&mut self, run: &Path) -> Result<Vec<Finished>> {
        loop {
            let mut done = Vec::new();
            for slot in 0..self.slots.len() {
                let Some(r) = &mut self.slots[slot] else { continue };
                let ended = match &mut r.process {
                    Process::Spawned(p) => p.try_wait()?.map(|status| status.to_string()),
                    Process::Attached(pid) => (!is_child_process(*pid, r.trial)).then(|| "exited".to_string()),
                };
                let Some(status) = ended else { continue };
                let Running { trial, job, .. } = self.slots[slot].take().expect("a running slot");
                if let Some(result) = child::read_result(run, trial) {
                    done.push(Finished { trial, result, job });
                    continue;
                }
                let reason = format!("child process {}: {status}{}", job.id, log_tail(&child::dir(run, trial).join("child.log")));
                match after_failure(trial, job, reason) {
                    Retry::Again(job) => self.spawn(run, trial, job)?,
                    Retry::Failed(f) => done.push(f),
                }
            }
            if !done.is_empty() {
                return Ok(done);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Local {
    /// A driver that stops (an error, or --stop-after) stops the children it started.
    fn drop(&mut self) {
        for r in self.slots.iter_mut().flatten() {
            if let Process::Spawned(p) = &mut r.process {
                let _ = p.kill();
                let _ = p.wait();
            }
        }
    }
}
