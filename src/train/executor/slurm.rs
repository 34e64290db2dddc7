//! Children as Slurm array jobs: each batch one `sbatch --array` of `enas
//! child` tasks, task i the batch's i-th child. Job states come
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
    /// Jobs in the queue that an earlier driver submitted but was killed
    /// before writing down (trial: job id), found on the first re-attach.
    orphans: Option<HashMap<usize, String>>,
}

/// What a submission is, written before `sbatch` runs: its job name and its
/// trials in array order, so a driver killed before it wrote the job ids
/// down can still find the jobs by name.
#[derive(serde::Serialize, serde::Deserialize)]
struct Submission {
    name: String,
    trials: Vec<usize>,
}

/// Output of a Slurm command, or a one-line error naming it.
fn slurm_command(program: &str, args: &[String]) -> Result<std::process::Output> {
    Command::new(program).args(args).output().with_context(|| format!("cannot run {program}: is Slurm's client installed and on PATH?"))
}

/// FNV-1a, 64 bits: a short tag of the run directory for job names.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

fn first_line(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string()
}

impl Slurm {
    pub fn new(exe: PathBuf, cfg: &ExecutorConfig) -> Slurm {
        let poll = Duration::from_secs_f64(if cfg.poll_seconds > 0.0 { cfg.poll_seconds } else { 2.0 });
        Slurm { exe, args: cfg.slurm_args.clone(), threads: cfg.threads, poll, running: Vec::new(), orphans: None }
    }

    pub fn in_flight(&self) -> usize {
        self.running.len()
    }

    /// The job script of one submission: array task i trains the i-th of
    /// `trials` (array indices stay below the cluster's MaxArraySize however
    /// far the search has come).
    fn script(&self, run: &Path, trials: &[usize]) -> Result<(PathBuf, String)> {
        let dir = run.join("slurm");
        std::fs::create_dir_all(dir.join("logs")).with_context(|| format!("{}: cannot create the Slurm directory", dir.display()))?;
        let quote = |p: &Path| shell_words::quote(&p.to_string_lossy()).into_owned();
        // sbatch exports the driver's environment, thread counts for the driver's machine included:
        // without --child-threads a child takes the cores of its own allocation.
        let threads = match self.threads {
            Some(t) => format!("export RAYON_NUM_THREADS={t}\nunset CANDLE_NUM_THREADS\n"),
            None => "unset RAYON_NUM_THREADS CANDLE_NUM_THREADS\n".to_string(),
        };
        let list: Vec<String> = trials.iter().map(|t| t.to_string()).collect();
        let text = format!(
            "#!/bin/bash\n# Written by enas: array task i trains the i-th child of this list, of the multi-trial search in {}.\ntrials=({})\n{threads}exec {} child --run {} --trial \"${{trials[$SLURM_ARRAY_TASK_ID]}}\"\n",
            quote(run),
            list.join(" "),
            quote(&self.exe),
            quote(run)
        );
        let n = std::fs::read_dir(&dir).map_or(0, |d| d.filter(|e| e.as_ref().is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".sh"))).count());
        let path = dir.join(format!("batch-{n:05}.sh"));
        crate::train::checkpoint::write_atomic(&path, &text)?;
        // A name of this run and submission alone: the run directory's path hashed, and the number.
        let name = format!("enas-{:08x}-{n}", fnv1a(run.as_os_str().as_encoded_bytes()) as u32);
        let record = Submission { name, trials: trials.to_vec() };
        crate::train::checkpoint::write_atomic(&path.with_extension("json"), &serde_json::to_string(&record)?)?;
        Ok((path, record.name))
    }

    /// Array tasks in the queue by the names of this run's submissions: (trial, job id).
    fn find_orphans(&self, run: &Path) -> Result<HashMap<usize, String>> {
        let mut by_name: HashMap<String, Vec<usize>> = HashMap::new();
        for entry in std::fs::read_dir(run.join("slurm")).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "json") {
                if let Some(sub) = std::fs::read_to_string(&path).ok().and_then(|t| serde_json::from_str::<Submission>(&t).ok()) {
                    by_name.insert(sub.name, sub.trials);
                }
            }
        }
        if by_name.is_empty() {
            return Ok(HashMap::new());
        }
        let args = ["-h", "-r", "--me", "-o", "%i|%j"].map(String::from);
        let out = slurm_command("squeue", &args)?;
        if !out.status.success() {
            bail!("squeue: {}", first_line(&out.stderr));
        }
        let mut found = HashMap::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let Some((id, name)) = line.split_once('|') else { continue };
            let task = id.trim().split_once('_').and_then(|(_, t)| t.parse::<usize>().ok());
            if let (Some(trials), Some(task)) = (by_name.get(name.trim()), task) {
                if let Some(&trial) = trials.get(task) {
                    found.insert(trial, id.trim().to_string());
                }
            }
        }
        Ok(found)
    }

    fn sbatch(&mut self, run: &Path, batch: Vec<(usize, Job)>) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let trials: Vec<usize> = batch.iter().map(|(t, _)| *t).collect();
        let (script, name) = self.script(run, &trials)?;
        let mut args = vec![
            "--parsable".to_string(),
            format!("--job-name={name}"),
            format!("--array=0-{}", batch.len() - 1),
            format!("--output={}", run.join("slurm").join("logs").join("%A_%a.out").display()),
        ];
        args.extend(self.args.iter().cloned());
        args.push(script.to_string_lossy().into_owned());
        let out = slurm_command("sbatch", &args)?;
        let names = || trials.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(",");
        if !out.status.success() {
            bail!("sbatch refused the children {}: {}", names(), first_line(&out.stderr));
        }
        let id = first_line(&out.stdout).split(';').next().unwrap_or("").trim().to_string();
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
            bail!("sbatch answered {id:?}, not a job id");
        }
        for (i, (trial, mut job)) in batch.into_iter().enumerate() {
            job.id = format!("{id}_{i}");
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

    /// A job an earlier driver submitted, still queued or running, whether or
    /// not it lived to write its id down: watched again.
    pub fn attach(&mut self, run: &Path, trial: usize, job: Option<Job>) -> Result<bool> {
        if let Some(job) = job.filter(|j| j.executor == ExecutorKind::Slurm && !j.id.is_empty()) {
            if self.queue_states(&[job.id.as_str()])?.contains_key(&job.id) {
                self.running.push((trial, job));
                return Ok(true);
            }
        }
        if self.orphans.is_none() {
            self.orphans = Some(self.find_orphans(run)?);
        }
        let Some(id) = self.orphans.as_mut().and_then(|o| o.remove(&trial)) else { return Ok(false) };
        let mut job = Job::next(run, trial, ExecutorKind::Slurm);
        job.id = id;
        job.write(run, trial)?;
        self.running.push((trial, job));
        Ok(true)
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
