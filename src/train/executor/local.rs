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

/// Whether process `pid` is alive and is the `enas child` of trial `trial` of the run in `run`.
fn is_child_process(pid: u32, run: &Path, trial: usize) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { return false };
    let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
    let (trial, run) = (trial.to_string(), run.as_os_str().as_encoded_bytes());
    let flag = |name: &[u8], value: &[u8]| args.windows(2).any(|w| w[0] == name && w[1] == value);
    args.iter().any(|a| *a == b"child") && flag(b"--trial", trial.as_bytes()) && flag(b"--run", run)
}

impl Local {
    pub fn new(exe: PathBuf, cfg: &ExecutorConfig) -> Local {
        let parallel = cfg.parallel.max(1);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let fallback = if cfg.default_device.is_empty() { "cpu".to_string() } else { cfg.default_device.clone() };
        let devices = if cfg.devices.is_empty() { vec![fallback] } else { cfg.devices.clone() };
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
            .env_remove("CANDLE_NUM_THREADS")
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

    /// An earlier driver's child still running on this host, whether or not
    /// that driver lived to write its pid down: watched again, not started again.
    pub fn attach(&mut self, run: &Path, trial: usize, job: Option<Job>) -> Result<bool> {
        let recorded = job.as_ref().filter(|j| j.executor == ExecutorKind::Local && j.host == child::hostname()).and_then(|j| j.id.parse::<u32>().ok());
        let pid = match recorded.filter(|&p| is_child_process(p, run, trial)) {
            Some(p) => p,
            None => {
                let pids = std::fs::read_dir("/proc").into_iter().flatten().flatten().filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok());
                let Some(p) = pids.into_iter().find(|&p| is_child_process(p, run, trial)) else { return Ok(false) };
                p
            }
        };
        let slot = self.free_slot()?;
        let mut job = job.unwrap_or_else(|| Job::next(run, trial, ExecutorKind::Local));
        job.id = pid.to_string();
        job.write(run, trial)?;
        self.slots[slot] = Some(Running { trial, process: Process::Attached(pid), job });
        Ok(true)
    }

    pub fn wait(&mut self, run: &Path) -> Result<Vec<Finished>> {
        loop {
            let mut done = Vec::new();
            for slot in 0..self.slots.len() {
                let Some(r) = &mut self.slots[slot] else { continue };
                let ended = match &mut r.process {
                    Process::Spawned(p) => p.try_wait()?.map(|status| status.to_string()),
                    Process::Attached(pid) => (!is_child_process(*pid, run, r.trial)).then(|| "exited".to_string()),
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
