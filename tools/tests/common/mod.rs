//! Helpers shared by the integration tests: a real `rill serve` process on loopback ports.
#![allow(dead_code, missing_docs)]

pub mod clients;
pub mod raw;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub const RILL: &str = env!("CARGO_BIN_EXE_rill");

/// A `rill serve` child process; killed when dropped.
pub struct Broker {
    pub child: Child,
    /// Native-protocol address.
    pub addr: String,
    /// Kafka-protocol address.
    pub kafka: String,
    /// Admin HTTP address (metrics, health).
    pub admin: String,
}

impl Broker {
    pub fn start(dir: &Path) -> Broker {
        Broker::start_with_profile(dir, Path::new("small-vm"))
    }

    pub fn start_with_profile(dir: &Path, profile: &Path) -> Broker {
        Broker::start_with(dir, profile, "127.0.0.1:0")
    }

    /// Starts with the Kafka listener on `kafka_listen` (a fixed port survives restarts).
    pub fn start_with(dir: &Path, profile: &Path, kafka_listen: &str) -> Broker {
        Broker::start_args(dir, profile, kafka_listen, &[])
    }

    /// Starts with more `rill serve` flags.
    pub fn start_args(dir: &Path, profile: &Path, kafka_listen: &str, extra: &[&str]) -> Broker {
        Broker::spawn(Command::new(RILL), dir, profile, kafka_listen, extra)
    }

    /// Starts under `ulimit -n open_files` (soft and hard: the broker cannot raise it).
    pub fn start_limited(dir: &Path, open_files: u32) -> Broker {
        let mut command = Command::new("sh");
        command.args(["-c", &format!("ulimit -n {open_files} && exec \"$0\" \"$@\""), RILL]);
        Broker::spawn(command, dir, Path::new("small-vm"), "127.0.0.1:0", &[])
    }

    fn spawn(mut command: Command, dir: &Path, profile: &Path, kafka_listen: &str, extra: &[&str]) -> Broker {
        let mut child = command
            .args(["serve", "--native-listen", "127.0.0.1:0", "--kafka-listen", kafka_listen])
            .args(["--admin-listen", "127.0.0.1:0", "--profile"])
            .arg(profile)
            .arg("--data-dir")
            .arg(dir)
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("rill serve starts");
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        let mut address = || {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            line.strip_prefix("rill listening on ")
                .and_then(|rest| rest.split_whitespace().next())
                .unwrap_or_else(|| panic!("unexpected line {line:?}"))
                .to_string()
        };
        let addr = address();
        let kafka = address();
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let admin = line
            .strip_prefix("rill admin listening on http://")
            .unwrap_or_else(|| panic!("unexpected line {line:?}"))
            .trim()
            .to_string();
        // Keep draining stdout so the broker never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
        Broker { child, addr, kafka, admin }
    }

    /// Runs a `rill` client command against this broker; asserts success, returns stdout.
    pub fn rill(&self, args: &[&str], stdin: Option<&str>) -> String {
        let mut child = Command::new(RILL)
            .arg("--broker")
            .arg(&self.addr)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin.unwrap_or("").as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "rill {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// SIGTERM and wait: a graceful stop exits 0.
    pub fn stop(mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc_kill(self.child.id() as i32, 15) };
        let status = self.child.wait().unwrap();
        assert!(status.success(), "graceful stop exits 0, got {status}");
    }

    /// SIGKILL and wait.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

unsafe extern "C" {
    #[link_name = "kill"]
    pub fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// A temporary directory and the data directory inside it.
pub fn data_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let path = dir.path().join("data");
    (dir, path)
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Runs `rill bench --json` with `args`, asserts it succeeds, and returns its result.
pub fn bench_json(args: &[&str]) -> serde_json::Value {
    let out =
        Command::new(RILL).arg("bench").arg("--json").args(args).env("RUST_LOG", "warn").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}
