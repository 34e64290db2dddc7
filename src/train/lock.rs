//! One driver per run directory: a lock file holding the driver's host and
//! pid, taken when it starts and removed when it ends. A lock left by a driver
//! that was killed on this host is taken over; one held by a live process, or
//! by another host (which this one cannot check), is refused in one line.
use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

pub const LOCK: &str = "driver.lock";

pub struct Lock {
    path: PathBuf,
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

impl Lock {
    pub fn take(dir: &Path) -> Result<Lock> {
        let path = dir.join(LOCK);
        let host = super::child::hostname();
        let me = std::process::id();
        for _ in 0..2 {
            match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut f) => {
                    writeln!(f, "{host} {me}").with_context(|| format!("{}: cannot write the lock", path.display()))?;
                    return Ok(Lock { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let text = std::fs::read_to_string(&path).unwrap_or_default();
                    let mut words = text.split_whitespace();
                    let (holder, pid) = (words.next().unwrap_or("").to_string(), words.next().and_then(|p| p.parse::<u32>().ok()));
                    match pid {
                        Some(pid) if holder == host && pid != me && alive(pid) => {
                            bail!("{}: another enas (pid {pid} on {holder}) is driving this run; wait for it or stop it first", dir.display())
                        }
                        Some(pid) if holder != host => {
                            bail!("{}: a driver on {holder} (pid {pid}) holds this run; if it is gone, delete {} and resume", dir.display(), path.display())
                        }
                        // A lock whose driver is dead (or unreadable): taken over.
                        _ => std::fs::remove_file(&path).with_context(|| format!("{}: cannot remove a stale lock", path.display()))?,
                    }
                }
                Err(e) => return Err(e).with_context(|| format!("{}: cannot create the lock", path.display())),
            }
        }
        bail!("{}: another driver keeps taking this run's lock", dir.display())
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
