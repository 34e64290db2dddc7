//! Children as Slurm array jobs: each batch one `sbatch --array` of `enas
//! child` tasks, the array index the child's trial number. Job states come
//! from `squeue` (and `sacct`, where the cluster keeps accounting, for why a
//! job ended); results come only through the run directory, which must be on
//! a file system the nodes share.
use super::{after_failure, ExecutorConfig, ExecutorKind, Finished, Job, Retry};
use crate::train::child;
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub struct Slurm {
    exe: PathBuf,
    args: Vec<String>,
    threads: Option<usize>,
    poll: Duration,
    running: Vec<(usize, Job)>,
}

/// Output of a Slurm command, or a one-line error naming it.
fn slurm_command(program: &str, args: &[String]) -> Result<std::process::Output> {
    Command::new(program).args(args).output().with_context(|| format!("cannot run {program}: is Slurm's client installed and on PATH?"))
}

fn first_line(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string()
}

impl Slurm {
    pub fn new(exe: PathBuf, cfg: &ExecutorConfig) -> Slurm {
        let poll = Duration::from_secs_f64(if cfg.poll_seconds > 0.0 { cfg.poll_seconds } else { 2.0 });
        Slurm { exe, args: cfg.slurm_args.clone(), threads: cfg.threads, poll, running: Vec::new() }
    }

    pub fn in_flight(&self) -> usize {
        self.running.len()
    }

    /// The job script every array task runs: the child whose trial is its index.
    fn script(&self, run: &Path) -> Result<PathBuf> {
        let dir = run.join("slurm");
        std::fs::create_dir_all(dir.join("logs")).with_context(|| format!("{}: cannot create the Slurm directory", dir.display()))?;
        let quote = |p: &Path| shell_words::quote(&p.to_string_lossy()).into_owned();
        let threads = self.threads.map(|t| format!("export RAYON_NUM_THREADS={t}\n")).unwrap_or_default();
        let text = format!(
            "#!/bin/sh\n# Written by enas: array task N trains child N of the multi-trial search in this run directory.\n{threads}exec {} child --run {} --trial \"$SLURM_ARRAY_TASK_ID\"\n",
            quote(&self.exe),
            quote(run)
        );
        let path = dir.join("child.sh");
        crate::train::checkpoint::write_atomic(&path, &text)?;
        Ok(path)
    }

    fn sbatch(&mut self, run: &Path, batch: Vec<(usize, Job)>) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let script = self.script(run)?;
        let array: Vec<String> = batch.iter().map(|(t, _)| t.to_string()).collect();
        let mut args = vec![
            "--parsable".to_string(),
            "--job-name=enas-child".to_string(),
            format!("--array={}", array.join(",")),
            format!("--output={}", run.join("slurm").join("logs").join("%A_%a.out").display()),
        ];
        args.extend(self.args.iter().cloned());
        args.push(script.to_string_lossy().into_owned());
        let out = slurm_command("sbatch", &args)?;
        if !out.status.success() {
            bail!("sbatch refused the children {}: {}", array.join(","), first_line(&out.stderr));
        }
        let id = first_line(&out.stdout).split(';').next().unwrap_or("").trim().to_string();
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
            bail!("sbatch answered {id:?}, not a job id");
        }
        for (trial, mut job) in batch {
            job.id = format!("{id}_{trial}");
            job.write(run, trial)?;
            self.running.push((trial, job));
        }
        Ok(())
    }

    pub fn submit(&mut self, run: &Path, trials: &[usize]) -> Result<()> {
        let batch = trials.iter().map(|&t| (t, Job::next(run, t, ExecutorKind::Slurm))).collect();
        self.sbatch(run, batch)
    }

    /// States of `ids` still known to the queue (pending, running, completing...).
    fn queue_states(&self, ids: &[&str]) -> Result<HashMap<String, String>> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let args = ["-h", "-r", "-o", "%i|%T", &format!("--jobs={}", ids.join(","))].map(String::from);
        let out = slurm_command("squeue", &args)?;
        if !out.status.success() {
            let err = first_line(&out.stderr);
            // Jobs that left the queue altogether are "invalid" to squeue.
            if err.contains("Invalid job id") {
                return Ok(HashMap::new());
            }
            bail!("squeue: {err}");
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('|'))
            .map(|(id, state)| (id.trim().to_string(), state.trim().to_string()))
            .collect())
    }

    /// How a job that left the queue ended, where the cluster keeps accounting.
    fn final_state(&self, id: &str) -> Option<String> {
        let args = ["-n", "-P", "-X", "-j", id, "-o", "State"].map(String::from);
        let out = slurm_command("sacct", &args).ok().filter(|o| o.status.success())?;
        Some(first_line(&out.stdout)).filter(|s| !s.is_empty())
    }

    /// A job an earlier driver submitted, still queued or running: watched again.
    pub fn attach(&mut self, trial: usize, job: Job) -> Result<bool> {
        if job.executor != ExecutorKind::Slurm || job.id.is_empty() {
            return Ok(false);
        }
        if self.queue_states(&[job.id.as_str()])?.contains_key(&job.id) {
            self.running.push((trial, job));
            return Ok(true);
        }
        Ok(false)
    }

    pub fn wait(&mut self, run: &Path) -> Result<Vec<Finished>> {
        loop {
            let ids: Vec<String> = self.running.iter().map(|(_, j)| j.id.clone()).collect();
            let states = self.queue_states(&ids.iter().map(String::as_str).collect::<Vec<_>>())?;
            let mut done = Vec::new();
            let mut again = Vec::new();
            for (trial, mut job) in std::mem::take(&mut self.running) {
                if let Some(result) = child::read_result(run, trial) {
                    job.slot = result.host.clone();
                    done.push(Finished { trial, result, job });
                } else if states.contains_key(&job.id) {
                    self.running.push((trial, job));
                } else {
                    let how = self.final_state(&job.id).unwrap_or_else(|| "left the queue".into());
                    let reason = format!(
                        "Slurm job {} {} without a result (log: {})",
                        job.id,
                        how.to_lowercase(),
                        run.join("slurm").join("logs").join(format!("{}.out", job.id)).display()
                    );
                    match after_failure(trial, job, reason) {
                        Retry::Again(job) => again.push((trial, job)),
                        Retry::Failed(f) => done.push(f),
                    }
                }
            }
            self.sbatch(run, again)?;
            if !done.is_empty() {
                return Ok(done);
            }
            std::thread::sleep(self.poll);
        }
    }
}
