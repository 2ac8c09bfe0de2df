//! Child processes that cannot outlive a test: [`Proc`] reads a program's printed lines and
//! kills it when dropped; [`Group`] does the same for a program and everything it starts.
//! Both are reaped on drop, also when the test panics.

use std::{
    ffi::OsString,
    fmt::Write as _,
    io::{BufRead, BufReader, Write},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Mutex, PoisonError, mpsc},
    time::{Duration, Instant},
};

use crate::wait::WAIT;

/// Where a child's stderr (its logs) goes.
#[derive(Debug, Clone, Default)]
pub enum Log {
    /// Nowhere.
    #[default]
    Null,
    /// To the test's own stderr.
    Inherit,
    /// Into this file, created anew.
    File(PathBuf),
}

impl Log {
    fn stdio(&self) -> Stdio {
        match self {
            Self::Null => Stdio::null(),
            Self::Inherit => Stdio::inherit(),
            Self::File(path) => std::fs::File::create(path)
                .unwrap_or_else(|e| panic!("cannot create the log {}: {e}", path.display()))
                .into(),
        }
    }
}

/// A child process whose stdout lines arrive on a channel; its stdin is a pipe the test can
/// type into. Killed and reaped when dropped.
pub struct Proc {
    name: String,
    child: Child,
    /// In a mutex only so that a `Proc` is `Sync` (and can be shared with async tasks): the
    /// methods that read it take `&mut self`.
    lines: Mutex<mpsc::Receiver<String>>,
    seen: Vec<String>,
}

/// A command that runs `bin`, through `via` when it is not empty (a launcher such as
/// `ip netns exec NS`).
pub fn launched(via: &[OsString], bin: &Path) -> Command {
    match via.split_first() {
        Some((program, rest)) => {
            let mut cmd = Command::new(program);
            cmd.args(rest).arg(bin);
            cmd
        }
        None => Command::new(bin),
    }
}

impl Proc {
    /// Starts `cmd` (called `name` in failure messages), its stderr going to `log`.
    ///
    /// # Panics
    /// When the program cannot be started.
    pub fn spawn(name: &str, mut cmd: Command, log: &Log) -> Self {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log.stdio())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        let stdout = child
            .stdout
            .take()
            .expect("stdout was set to a pipe just above");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            name: name.to_owned(),
            child,
            lines: Mutex::new(lines),
            seen: Vec::new(),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every line printed so far that was read by one of the waits.
    pub fn seen(&self) -> &[String] {
        &self.seen
    }

    /// The next printed line, within `limit`.
    ///
    /// # Panics
    /// When no line comes within `limit` (or the process closed its stdout).
    pub fn next_line(&mut self, what: &str, limit: Duration) -> String {
        let lines = self.lines.get_mut().unwrap_or_else(PoisonError::into_inner);
        match lines.recv_timeout(limit) {
            Ok(line) => {
                self.seen.push(line.clone());
                line
            }
            Err(_) => panic!(
                "{} did not print {what} within {limit:?}; it printed {:?}",
                self.name, self.seen
            ),
        }
    }

    /// The first line (printed so far or within [`WAIT`]) that satisfies `pred`.
    ///
    /// # Panics
    /// When no such line comes within [`WAIT`].
    pub fn line_where(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(line) = self.seen.iter().find(|l| pred(l)) {
                return line.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let lines = self.lines.get_mut().unwrap_or_else(PoisonError::into_inner);
            match lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!(
                    "{}: no line {what} within {WAIT:?}; saw {:?}",
                    self.name, self.seen
                ),
            }
        }
    }

    /// The value after `prefix` on the first line that starts with it, trimmed.
    pub fn field(&mut self, prefix: &str) -> String {
        let line = self.line_where(&format!("starting with {prefix:?}"), |l| {
            l.starts_with(prefix)
        });
        line[prefix.len()..].trim().to_owned()
    }

    /// The first line that contains `needle`.
    pub fn field_containing(&mut self, needle: &str) -> String {
        self.line_where(&format!("containing {needle:?}"), |l| l.contains(needle))
    }

    /// Types `line` and Enter on the process's stdin.
    ///
    /// # Panics
    /// When the process no longer reads its input.
    pub fn type_line(&mut self, line: &str) {
        let stdin = self
            .child
            .stdin
            .as_mut()
            .expect("stdin is piped in `spawn`");
        writeln!(stdin, "{line}")
            .unwrap_or_else(|e| panic!("{} does not read its input: {e}", self.name));
    }

    /// The exit status, if the process has exited.
    ///
    /// # Panics
    /// When the status cannot be read.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child
            .try_wait()
            .unwrap_or_else(|e| panic!("the status of {}: {e}", self.name))
    }

    /// Waits up to [`WAIT`] for the process to exit.
    ///
    /// # Panics
    /// When it is still running then; the message says the process did not `what`.
    pub fn exit_status(&mut self, what: &str) -> ExitStatus {
        self.exit_within(WAIT, &format!("{what} within {WAIT:?}"))
    }

    fn exit_within(&mut self, limit: Duration, what: &str) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.try_wait() {
                return status;
            }
            assert!(Instant::now() < deadline, "{} did not {what}", self.name);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGTERM and waits up to [`WAIT`] for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        self.terminate_within(WAIT)
    }

    /// Sends SIGTERM and waits up to `limit` for the exit status.
    ///
    /// # Panics
    /// When the process is still running after `limit`.
    pub fn terminate_within(&mut self, limit: Duration) -> ExitStatus {
        signal(&self.pid().to_string(), "-TERM");
        self.exit_within(limit, &format!("stop within {limit:?} of SIGTERM"))
    }

    /// SIGKILL, then reaps the process.
    ///
    /// # Panics
    /// When the process cannot be killed or reaped.
    pub fn kill(&mut self) {
        self.child
            .kill()
            .unwrap_or_else(|e| panic!("SIGKILL to {}: {e}", self.name));
        self.child
            .wait()
            .unwrap_or_else(|e| panic!("reaping the killed {}: {e}", self.name));
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn signal(target: &str, signal: &str) {
    let _ = Command::new("kill")
        .args([signal, "--", target])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// A child started in a process group of its own: dropping it kills the whole group (a
/// driver and the browser or app it launched go together), then reaps the child.
pub struct Group {
    child: Child,
}

impl Group {
    /// Starts `cmd` (configured by the caller for stdout and stderr) as a group leader.
    ///
    /// # Panics
    /// When the program cannot be started.
    pub fn spawn(name: &str, mut cmd: Command) -> Self {
        let child = cmd
            .process_group(0)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {name}: {e}"));
        Self { child }
    }

    /// The leader's exit status, if it has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Asks the group to stop (SIGTERM), then kills it after `grace`.
    pub fn stop(&mut self, grace: Duration) {
        let group = format!("-{}", self.child.id());
        if self.try_wait().is_none() {
            signal(&group, "-TERM");
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline && self.try_wait().is_none() {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        // The leader may be gone while others of its group are not.
        signal(&group, "-KILL");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(2));
    }
}

/// The last `lines` lines of a log file, indented, or why it could not be read.
pub fn tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            let start = all.len().saturating_sub(lines);
            all[start..].iter().fold(String::new(), |mut out, line| {
                let _ = writeln!(out, "  | {line}");
                out
            })
        }
        Err(e) => format!("  ({}: {e})", path.display()),
    }
}
