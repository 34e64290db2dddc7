//! Multi-trial search on a real single-node Slurm cluster (Debian's slurmctld,
//! slurmd and munge, installed by scripts/setup.sh, started here as root with
//! a slurm.conf of our own): children as array jobs, the same trials as the
//! local executor, a driver killed with SIGKILL that re-attaches to its jobs,
//! and a job cancelled mid-training that is resubmitted once.
mod common;

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

struct Cluster {
    dir: tempfile::TempDir,
    daemons: Vec<Child>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn daemon(program: &str, args: &[&str], conf: &Path) -> Child {
    Command::new(program)
        .args(args)
        .env("SLURM_CONF", conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {program} ({e}): scripts/setup.sh installs slurmctld, slurmd, munge and slurm-client"))
}

impl Cluster {
    fn start() -> Cluster {
        assert_eq!(unsafe { libc::geteuid() }, 0, "the Slurm test starts slurmd and slurmctld, which need root (CI runs as root)");
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for sub in ["munge", "state", "spool", "log"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        let key: Vec<u8> = (0..1024u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        std::fs::write(d.join("munge/key"), key).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(d.join("munge/key"), std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::set_permissions(d.join("munge"), std::fs::Permissions::from_mode(0o700)).unwrap();
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().split('.').next().unwrap().to_string();
        let p = |s: &str| d.join(s).display().to_string();
        let conf = d.join("slurm.conf");
        std::fs::write(
            &conf,
            format!(
                "ClusterName=enastest\nSlurmctldHost={host}(127.0.0.1)\nSlurmctldPort={}\nSlurmdPort={}\n\
                 AuthType=auth/munge\nAuthInfo=socket={}\nCredType=cred/munge\nSlurmUser=root\nSlurmdUser=root\n\
                 StateSaveLocation={}\nSlurmdSpoolDir={}\nSlurmctldPidFile={}\nSlurmdPidFile={}\n\
                 SlurmctldLogFile={}\nSlurmdLogFile={}\nProctrackType=proctrack/pgid\nTaskPlugin=task/none\n\
                 SelectType=select/cons_tres\nSelectTypeParameters=CR_CPU\nJobAcctGatherType=jobacct_gather/none\n\
                 AccountingStorageType=accounting_storage/none\nJobCompType=jobcomp/filetxt\nJobCompLoc={}\n\
                 ReturnToService=2\nMpiDefault=none\nSlurmdParameters=config_overrides\nSchedulerType=sched/builtin\n\
                 NodeName={host} NodeAddr=127.0.0.1 CPUs=4 RealMemory=2000 State=UNKNOWN\n\
                 PartitionName=test Nodes={host} Default=YES MaxTime=INFINITE State=UP\n",
                free_port(),
                free_port(),
                p("munge/sock"),
                p("state"),
                p("spool"),
                p("slurmctld.pid"),
                p("slurmd.pid"),
                p("log/slurmctld.log"),
                p("log/slurmd.log"),
                p("jobcomp.txt"),
            ),
        )
        .unwrap();
        let sock = p("munge/sock");
        let munge_args = [
            "-F",
            "-f",
            "--key-file",
            &p("munge/key"),
            "--socket",
            &sock,
            "--pid-file",
            &p("munge/pid"),
            "--log-file",
            &p("munge/log"),
            "--seed-file",
            &p("munge/seed"),
        ];
        let mut cluster = Cluster { daemons: vec![daemon("munged", &munge_args, &conf)], dir };
        wait_for(Duration::from_secs(20), "munged's socket", || Path::new(&sock).exists());
        cluster.daemons.push(daemon("slurmctld", &["-D"], &conf));
        cluster.daemons.push(daemon("slurmd", &["-D"], &conf));
        wait_for(Duration::from_secs(60), "the node to come up idle", || {
            cluster.run("sinfo", &["-h", "-o", "%T"]).map(|o| String::from_utf8_lossy(&o.stdout).trim() == "idle").unwrap_or(false)
        });
        cluster
    }

    fn conf(&self) -> PathBuf {
        self.dir.path().join("slurm.conf")
    }

    fn run(&self, program: &str, args: &[&str]) -> Option<Output> {
        Command::new(program).args(args).env("SLURM_CONF", self.conf()).output().ok()
    }

    /// Every job the cluster finished, from its job-completion log: (job id, state).
    fn finished_jobs(&self) -> Vec<(String, String)> {
        let out = self.run("sacct", &["-c", "-n", "-P", "-S", "2020-01-01", "-o", "JobID,JobName,State"]).unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split('|').collect();
                (f.len() == 3 && f[1].starts_with("enas-")).then(|| (f[0].to_string(), f[2].to_string()))
            })
            .collect()
    }

    /// Array tasks now running, as squeue names them (`<job>_<task>`).
    fn running(&self) -> Vec<String> {
        let out = self.run("squeue", &["-h", "-r", "-t", "RUNNING", "-o", "%i"]).unwrap();
        String::from_utf8_lossy(&out.stdout).lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for d in self.daemons.iter_mut().rev() {
            let _ = d.kill();
            let _ = d.wait();
        }
    }
}

fn wait_for(limit: Duration, what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn search_args(data: &Path, out: &Path, executor: &str) -> Vec<String> {
    let mut a: Vec<String> = [
        "search",
        "--mode",
        "multi-trial",
        "--space",
        "macro",
        "--strategy",
        "random",
        "--preset",
        "smoke",
        "--budget",
        "6",
        "--child-epochs",
        "3",
        "--train-limit",
        "2000",
        "--parallel",
        "3",
        "--child-threads",
        "1",
        "--executor",
        executor,
        "--seed",
        "3",
        "--quiet",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend(["--data-dir".into(), data.display().to_string(), "--out".into(), out.display().to_string()]);
    a
}

fn enas(cluster: &Cluster, args: &[String]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_enas"));
    c.args(args).env("SLURM_CONF", cluster.conf()).env_remove("RUST_BACKTRACE");
    c
}

fn trials(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("search/trials.jsonl")).unwrap_or_default().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// What a search decided, without when and where its children ran.
fn outcome(run: &Path) -> Vec<(u64, String, f64, u64, String)> {
    trials(run)
        .iter()
        .map(|t| {
            (
                t["index"].as_u64().unwrap(),
                t["arch"].as_str().unwrap().into(),
                t["reward"].as_f64().unwrap(),
                t["params"].as_u64().unwrap(),
                t["note"].to_string(),
            )
        })
        .collect()
}

/// Slurm job id (its own, not the array's) of each child, from the children's results.
fn child_jobs(run: &Path) -> HashMap<u64, String> {
    (0..6u64)
        .map(|i| {
            let r: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(run.join(format!("search/children/{i:04}/result.json"))).unwrap()).unwrap();
            (i, r["job"].as_str().unwrap_or_else(|| panic!("child {i} did not run under Slurm: {r}")).to_string())
        })
        .collect()
}

/// The child whose job (as the driver wrote it in job.json) is `id`.
fn trial_of(run: &Path, id: &str) -> Option<usize> {
    (0..6).find(|t| {
        let job = std::fs::read_to_string(run.join(format!("search/children/{t:04}/job.json"))).unwrap_or_default();
        serde_json::from_str::<serde_json::Value>(&job).is_ok_and(|j| j["id"] == id)
    })
}

#[test]
fn children_run_as_slurm_jobs_survive_a_killed_driver_and_a_cancelled_job() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    common::write_fashion(&data, 2200, 40, true);
    let cluster = Cluster::start();

    // The local executor's search, the reference.
    let local = t.path().join("local");
    let out = enas(&cluster, &search_args(&data, &local, "local")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let reference = outcome(&local);
    assert_eq!(reference.len(), 6);

    // 1. The same search on Slurm: six array tasks, each a job of its own in sacct, the same trials.
    let slurm = t.path().join("slurm");
    let out = enas(&cluster, &search_args(&data, &slurm, "slurm")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(outcome(&slurm), reference, "Slurm's trials differ from the local executor's");
    let jobs = child_jobs(&slurm);
    let finished = cluster.finished_jobs();
    for (i, job) in &jobs {
        let runs: Vec<_> = finished.iter().filter(|(id, _)| id == job).collect();
        assert_eq!(runs.len(), 1, "child {i}'s job {job}: {finished:?}");
        assert_eq!(runs[0].1, "COMPLETED");
    }
    assert!(trials(&slurm).iter().all(|t| t["attempts"] == 1 && t["job"].as_str().is_some_and(|j| j.contains('_'))), "{:?}", trials(&slurm));

    // 2. The driver killed with SIGKILL while children run, then resumed: it re-attaches, no child runs twice.
    let killed = t.path().join("killed");
    let before = cluster.finished_jobs().len();
    let mut driver = enas(&cluster, &search_args(&data, &killed, "slurm")).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    wait_for(Duration::from_secs(120), "the second batch running under the first driver", || trials(&killed).len() >= 3 && !cluster.running().is_empty());
    assert!(driver.try_wait().unwrap().is_none(), "the search ended before it could be killed");
    driver.kill().unwrap();
    driver.wait().unwrap();
    let left = String::from_utf8_lossy(&cluster.run("squeue", &["-h", "-r", "-o", "%i"]).unwrap().stdout).lines().count();
    assert!(left > 0, "nothing was left running or queued when the driver died");
    let out = enas(&cluster, &[search_args(&data, &killed, "slurm"), vec!["--resume".into()]].concat()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(outcome(&killed), reference, "the resumed search differs from the uninterrupted one");
    let finished = cluster.finished_jobs();
    assert_eq!(finished.len() - before, 6, "a child ran twice: {:?}", &finished[before..]);
    assert!(finished[before..].iter().all(|(_, s)| s == "COMPLETED"), "{:?}", &finished[before..]);
    assert!(!killed.join("search/driver.lock").exists(), "the lock outlived the driver");

    // 3. A child's job cancelled mid-training is resubmitted once, and the search completes.
    let cancelled = t.path().join("cancelled");
    let driver = enas(&cluster, &search_args(&data, &cancelled, "slurm")).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let mut victim = String::new();
    wait_for(Duration::from_secs(120), "a child training", || {
        // Mid-training: running, with its first epoch's metrics written.
        victim = cluster
            .running()
            .into_iter()
            .find(|id| trial_of(&cancelled, id).is_some_and(|t| cancelled.join(format!("search/children/{t:04}/metrics.jsonl")).exists()))
            .unwrap_or_default();
        !victim.is_empty()
    });
    // Its trial, read before the resubmission gives it a new job id.
    let task = trial_of(&cancelled, &victim).unwrap() as u64;
    let status = cluster.run("scancel", &[&victim]).unwrap().status;
    assert!(status.success());
    let out = driver.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let records = trials(&cancelled);
    assert_eq!(records.len(), 6);
    let rec = records.iter().find(|r| r["index"] == task).unwrap();
    assert_eq!(rec["attempts"], 2, "{rec}");
    assert!(rec["reward"].as_f64().unwrap() > 0.0 && rec["failed"].is_null(), "the resubmitted child should finish: {rec}");
    assert!(records.iter().filter(|r| r["index"] != task).all(|r| r["attempts"] == 1));
    // The resubmitted job continued the child from its last epoch's checkpoint, to the same numbers.
    assert_eq!(outcome(&cancelled), reference);
    let states: Vec<String> = cluster.finished_jobs().into_iter().map(|(_, s)| s).collect();
    assert!(states.iter().any(|s| s == "CANCELLED"), "{states:?}");
}
