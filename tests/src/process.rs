//! Child processes and waiting: the one place the harness spawns, signals and reaps processes
//! and polls for conditions.
//!
//! - [`Process`]: a child (`pairlab`, `chromedriver`, `turnserver`, another relay) with its
//!   stdout and stderr in a log file. It is stopped by its PID — SIGTERM, then SIGKILL after a
//!   grace ([`Process::stop`]) — and reaped; dropping it kills what
//!   is left (SIGKILL), also when a test fails half-way.
//! - [`kill_pid`], [`signal_pid`], [`pids_with_arg`]: processes the harness did not spawn itself
//!   (the Chromium processes chromedriver starts), found by a unique argument in
//!   `/proc/<pid>/cmdline` and signalled by PID — never a process group, never by name.
//! - [`Wait`]: polling with a deadline. Every wait of the harness is a loop that observes
//!   something (`/healthz`, a page's `data-state`, a record line) and calls [`Wait::tick`],
//!   which sleeps one poll interval or gives up with [`HarnessError::Timeout`]; sleeps are never
//!   assertions.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::error::io;
use crate::{tail, HarnessError, Result};

/// How often the harness polls while waiting.
pub const POLL: Duration = Duration::from_millis(100);

/// The default patience for anything the harness waits for (a process to become ready, a page
/// state, a record line).
pub const WAIT: Duration = Duration::from_secs(20);

/// How many log lines an error about a process quotes.
const LOG_LINES: usize = 40;

/// A polling loop's deadline: [`Wait::tick`] sleeps one interval, or returns
/// [`HarnessError::Timeout`] (with the caller's last observation) once the patience is spent.
#[derive(Debug)]
pub struct Wait {
    what: String,
    start: Instant,
    timeout: Duration,
    every: Duration,
}

impl Wait {
    /// Starts waiting for `what` (a phrase for the error message), for at most `timeout`,
    /// polling every [`POLL`].
    pub fn new(what: impl Into<String>, timeout: Duration) -> Wait {
        Wait {
            what: what.into(),
            start: Instant::now(),
            timeout,
            every: POLL,
        }
    }

    /// The same, polling every `every` instead of [`POLL`].
    pub fn every(mut self, every: Duration) -> Wait {
        self.every = every;
        self
    }

    /// How long the wait has lasted.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Whether the patience is spent.
    pub fn expired(&self) -> bool {
        self.start.elapsed() > self.timeout
    }

    /// Called after an observation that did not satisfy the condition: sleeps one poll
    /// interval, or gives up.
    ///
    /// # Errors
    /// [`HarnessError::Timeout`] naming what was awaited, how long, and `last` (the last
    /// observation, for debugging).
    pub async fn tick(&self, last: impl std::fmt::Display) -> Result<()> {
        if self.expired() {
            return Err(self.timeout_error(last));
        }
        tokio::time::sleep(self.every).await;
        Ok(())
    }

    /// The error [`Wait::tick`] gives up with.
    pub fn timeout_error(&self, last: impl std::fmt::Display) -> HarnessError {
        HarnessError::Timeout {
            what: self.what.clone(),
            waited_ms: self.start.elapsed().as_millis(),
            last: last.to_string(),
        }
    }
}

/// A child process with its output in a log file. Stopped by its PID and reaped when dropped.
#[derive(Debug)]
pub struct Process {
    name: &'static str,
    child: Option<Child>,
    pid: u32,
    log_path: PathBuf,
}

impl Process {
    /// Spawns `command` (stdin closed, stdout and stderr to a fresh `log_path`); `name` names
    /// it in errors (`pairlab`, `chromedriver`, …).
    ///
    /// # Errors
    /// [`HarnessError::Io`] when the log cannot be created or the program cannot be started
    /// (`hint` is added to the message: how to install it).
    pub fn spawn(
        name: &'static str,
        command: &mut Command,
        log_path: &Path,
        hint: &str,
    ) -> Result<Process> {
        let out = File::create(log_path).map_err(io(format!("create {}", log_path.display())))?;
        let err = out
            .try_clone()
            .map_err(io(format!("clone handle of {}", log_path.display())))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .map_err(io(format!(
                "start {name} ({}){hint}",
                command.get_program().to_string_lossy()
            )))?;
        Ok(Process {
            name,
            pid: child.id(),
            child: Some(child),
            log_path: log_path.to_path_buf(),
        })
    }

    /// Its PID.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Its name in errors.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Its exit status, if it has exited (it is reaped then).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// Whether it still runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    /// Its log file.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The last `n` lines of its log.
    pub fn log_tail(&self, n: usize) -> String {
        tail(&self.log_path, n)
    }

    /// [`HarnessError::Exited`] for `status`, with the end of its log.
    pub fn exited_error(&self, status: ExitStatus) -> HarnessError {
        HarnessError::Exited {
            name: self.name,
            status,
            log_path: self.log_path.display().to_string(),
            log: self.log_tail(LOG_LINES),
        }
    }

    /// `Err(`[`HarnessError::Exited`]`)` if it has exited: for loops that wait for it to become
    /// ready.
    ///
    /// # Errors
    /// [`HarnessError::Exited`].
    pub fn check_running(&mut self) -> Result<()> {
        match self.exited() {
            Some(status) => Err(self.exited_error(status)),
            None => Ok(()),
        }
    }

    /// Stops it (SIGTERM, then SIGKILL after `grace`) and reaps it: its exit status, `None` if
    /// it could not be reaped (or was stopped before). Blocks the thread up to `grace`; from
    /// async code, call it through `tokio::task::spawn_blocking`.
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        self.child.as_ref()?;
        if let Some(status) = self.terminate() {
            return Some(status);
        }
        let start = Instant::now();
        while start.elapsed() < grace {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill()
    }

    /// The exit status if it has exited; else sends SIGTERM and returns `None`.
    fn terminate(&mut self) -> Option<ExitStatus> {
        if let Some(status) = self.exited() {
            return Some(status);
        }
        signal_pid(self.pid, libc::SIGTERM);
        None
    }

    /// SIGKILL (to this child's PID only, through `Child::kill`) and reap.
    fn kill(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        let _ = child.kill();
        child.wait().ok()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sends SIGKILL to one process, by its PID. A PID that is gone already is not an error.
pub fn kill_pid(pid: u32) {
    signal_pid(pid, libc::SIGKILL);
}

/// Sends `signal` to one process by its PID: never a process group or "every process" (the PID
/// must be positive).
pub fn signal_pid(pid: u32, signal: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    if pid <= 0 {
        return;
    }
    // SAFETY: kill(2) with a positive PID and a valid signal number touches no memory of ours.
    unsafe {
        libc::kill(pid, signal);
    }
}

/// PIDs of live processes with `arg` as one of their command-line arguments (Linux `/proc`),
/// this process excluded.
pub fn pids_with_arg(arg: &str) -> Vec<u32> {
    let me = std::process::id();
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .map(|cmd| cmd.split(|b| *b == 0).any(|a| a == arg.as_bytes()))
                .unwrap_or(false)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pids_with_arg_finds_this_process_children_only_by_exact_argument() {
        let marker = format!("--pairlab-test-marker={}", std::process::id());
        // `sh -c CMD NAME`: NAME becomes `$0`, an argument on the command line of the shell.
        // CMD is the builtin `read` on a pipe, so the shell itself stays (dash would replace
        // itself with an external command such as `sleep`, and the marker would vanish).
        let mut child = Command::new("sh")
            .arg("-c")
            .arg("read x")
            .arg(&marker)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("spawn sh");
        // Right after spawn(2) returns, the child's /proc/PID/cmdline can still read empty for
        // a moment (seen in ~10 % of runs on a 2-core machine, and in CI), so wait for it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut found = pids_with_arg(&marker);
        while found.is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
            found = pids_with_arg(&marker);
        }
        assert_eq!(found, vec![child.id()]);
        assert!(pids_with_arg(&format!("{marker}x")).is_empty());
        child.kill().expect("kill");
        child.wait().expect("wait");
    }

    #[test]
    fn a_process_stops_on_sigterm_and_is_reaped() {
        let dir = std::env::temp_dir().join(format!("pairlab-process-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("temp dir");
        let log = dir.join("sleep.log");
        let mut p = Process::spawn("sleep", Command::new("sleep").arg("30"), &log, "")
            .expect("spawn sleep");
        let pid = p.pid();
        assert!(p.is_running());
        let status = p.stop(Duration::from_secs(5));
        assert!(status.is_some(), "reaped");
        assert!(!p.is_running());
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
        fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[tokio::test]
    async fn wait_gives_up_with_the_last_observation() {
        let wait = Wait::new("nothing", Duration::from_millis(30)).every(Duration::from_millis(5));
        let mut ticks = 0;
        let err = loop {
            match wait.tick(format!("tick {ticks}")).await {
                Ok(()) => ticks += 1,
                Err(e) => break e,
            }
        };
        assert!(ticks >= 1);
        match err {
            HarnessError::Timeout { what, last, .. } => {
                assert_eq!(what, "nothing");
                assert_eq!(last, format!("tick {ticks}"));
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
    }
}
