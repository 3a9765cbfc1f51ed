//! Running the built `whitebeat` binary from tests: a command with cheap Argon2 and no
//! inherited configuration, a deadline on every run, and a real `serve` process whose
//! address is read from its first line.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_whitebeat");

/// The binary on database `db`, with cheap Argon2 and no inherited `WHITEBEAT_*` settings.
pub fn whitebeat(db: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.arg("--db").arg(db);
    for (k, _) in std::env::vars() {
        if k.starts_with("WHITEBEAT_") {
            c.env_remove(k);
        }
    }
    c.env("WHITEBEAT_ARGON2_MEMORY_KIB", "64")
        .env("WHITEBEAT_ARGON2_ITERATIONS", "1")
        .env("WHITEBEAT_LOG", "warn")
        .stdin(Stdio::null());
    c
}

/// Runs a command to completion (two minutes at most: a hung command fails the test
/// instead of hanging it) and returns its output.
pub fn run(cmd: &mut Command) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary runs");
    wait_output(child, Duration::from_secs(120))
}

/// Waits for a child with a deadline and returns its output.
pub fn wait_output(mut child: Child, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "command did not finish in {limit:?}; stderr: {}",
                stderr(&out)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Runs a command with `input` on its stdin (two minutes at most, as `run`).
pub fn run_with_stdin(cmd: &mut Command, input: &str) -> Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    wait_output(child, Duration::from_secs(120))
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn assert_ok(o: &Output) {
    assert!(
        o.status.success(),
        "expected success, got {:?}; stdout: {} stderr: {}",
        o.status,
        stdout(o),
        stderr(o)
    );
}

/// A failure whose one line on stderr mentions `needle`.
pub fn assert_one_line_error(o: &Output, needle: &str) {
    assert!(
        !o.status.success(),
        "expected failure; stdout: {}",
        stdout(o)
    );
    let err = stderr(o);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line expected, got: {err:?}");
    assert!(
        lines[0].to_lowercase().contains(&needle.to_lowercase()),
        "{needle:?} not in {:?}",
        lines[0]
    );
}

/// A `whitebeat serve` process; killed when dropped.
pub struct ServeProcess {
    pub child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// Kept open: the server must not get EPIPE on stdout.
    _stdout: BufReader<ChildStdout>,
    /// Where its stderr goes, when a file.
    log: Option<PathBuf>,
}

impl ServeProcess {
    pub fn addr(&self) -> SocketAddr {
        self.base.trim_start_matches("http://").parse().unwrap()
    }

    /// Sends `signal` to the process; whether it could be sent.
    pub fn signal(&self, signal: libc::c_int) -> bool {
        // SAFETY: a signal to our own child, which is not reaped before `wait`.
        unsafe { libc::kill(self.child.id() as libc::pid_t, signal) == 0 }
    }

    /// SIGKILL, and waits for the end.
    pub fn kill9(&mut self) {
        self.signal(libc::SIGKILL);
        self.child.wait().unwrap();
    }

    /// SIGTERM, and waits for the end.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.child.wait().unwrap()
    }

    /// Its log so far, when its stderr goes to a file.
    pub fn log(&self) -> String {
        self.log
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default()
    }

    /// Waits (90 s at most) until the log has `n` lines containing `needle`.
    pub fn wait_log(&self, needle: &str, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(90);
        while self.log().matches(needle).count() < n {
            assert!(Instant::now() < deadline, "waited for {n} × {needle:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `serve` on 127.0.0.1:0 with extra arguments and waits for its address.
pub fn serve(db: &Path, args: &[&str]) -> ServeProcess {
    let mut cmd = whitebeat(db);
    cmd.args(["serve", "--bind", "127.0.0.1:0", "--threads", "2"])
        .args(args)
        .stderr(Stdio::null());
    spawn_serve(&mut cmd, None)
}

/// Starts a `serve` command (its stdout is taken here) and waits (30 s at most) for the
/// address on its first line. `log` is where its stderr goes, if a file: shown when it
/// does not start.
pub fn spawn_serve(cmd: &mut Command, log: Option<&Path>) -> ServeProcess {
    let mut child = cmd.stdout(Stdio::piped()).spawn().expect("serve starts");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = out.read_line(&mut line);
        let _ = tx.send((line, out));
    });
    let started = rx.recv_timeout(Duration::from_secs(30));
    let line = started.as_ref().map(|(l, _)| l.as_str()).unwrap_or("");
    let Some(addr) = line.trim().strip_prefix("White Beat listening on ") else {
        let _ = child.kill();
        let _ = child.wait();
        let log = log
            .map(|p| std::fs::read_to_string(p).unwrap_or_default())
            .unwrap_or_default();
        panic!("serve did not start: {line:?}\n{log}");
    };
    let base = addr.to_string();
    let (_, stdout) = started.unwrap();
    ServeProcess {
        child,
        base,
        _stdout: stdout,
        log: log.map(Path::to_path_buf),
    }
}
