//! Nodes of a real cluster, each a `rill serve` process in its own network namespace, joined by
//! veth pairs to a bridge in the test's namespace (which has an address on it, so the test's
//! clients reach every node). Cutting a node's veth isolates it; everything is torn down when
//! the [`Net`] is dropped.
#![allow(dead_code, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const RILL: &str = env!("CARGO_BIN_EXE_rill");

fn sh(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().expect("runs");
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A bridge and one namespace per node.
pub struct Net {
    pub tag: String,
    subnet: u32,
    pub nodes: u32,
}

impl Net {
    /// `nodes` namespaces on a new bridge.
    pub fn new(nodes: u32) -> Net {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let tag = format!("r{:x}{n}", pid % 0xfffff);
        // A subnet no interface here uses (a test killed by a timeout leaves its bridge behind).
        let used =
            String::from_utf8_lossy(&Command::new("ip").args(["-br", "addr"]).output().unwrap().stdout)
                .into_owned();
        let subnet = (0..200)
            .map(|k| 16 + (pid * 8 + n + k) % 200)
            .find(|s| !used.contains(&format!("10.231.{s}.")))
            .expect("a free subnet");
        let net = Net { tag, subnet, nodes };
        let bridge = net.bridge();
        sh(&["ip", "link", "add", &bridge, "type", "bridge"]);
        sh(&["ip", "addr", "add", &format!("10.231.{subnet}.254/24"), "dev", &bridge]);
        sh(&["ip", "link", "set", &bridge, "up"]);
        for i in 1..=nodes {
            let ns = net.namespace(i);
            let (outer, inner) = (net.veth(i), format!("{}p", net.veth(i)));
            sh(&["ip", "netns", "add", &ns]);
            sh(&["ip", "link", "add", &outer, "type", "veth", "peer", "name", &inner]);
            sh(&["ip", "link", "set", &inner, "netns", &ns]);
            sh(&[
                "ip",
                "netns",
                "exec",
                &ns,
                "ip",
                "addr",
                "add",
                &format!("{}/24", net.ip(i)),
                "dev",
                &inner,
            ]);
            sh(&["ip", "netns", "exec", &ns, "ip", "link", "set", &inner, "up"]);
            sh(&["ip", "netns", "exec", &ns, "ip", "link", "set", "lo", "up"]);
            sh(&["ip", "link", "set", &outer, "master", &bridge]);
            sh(&["ip", "link", "set", &outer, "up"]);
        }
        net
    }

    fn bridge(&self) -> String {
        format!("b{}", self.tag)
    }

    fn veth(&self, i: u32) -> String {
        format!("v{}{i}", self.tag)
    }

    pub fn namespace(&self, i: u32) -> String {
        format!("{}-{i}", self.tag)
    }

    /// Node `i`'s address.
    pub fn ip(&self, i: u32) -> String {
        format!("10.231.{}.{i}", self.subnet)
    }

    /// Cuts node `i` off from every other node and from the test.
    pub fn isolate(&self, i: u32) {
        sh(&["ip", "link", "set", &self.veth(i), "down"]);
    }

    /// Undoes [`Net::isolate`].
    pub fn heal(&self, i: u32) {
        sh(&["ip", "link", "set", &self.veth(i), "up"]);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for i in 1..=self.nodes {
            let _ = Command::new("ip").args(["netns", "del", &self.namespace(i)]).status();
            let _ = Command::new("ip").args(["link", "del", &self.veth(i)]).status();
        }
        let _ = Command::new("ip").args(["link", "del", &self.bridge()]).status();
    }
}

/// The files `rill cluster ca init` and `cert issue` make, for `nodes` nodes.
pub fn tls_dir(dir: &Path, nodes: u32) -> PathBuf {
    let tls = dir.join("tls");
    let run = |args: &[&str]| {
        let out = Command::new(RILL).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run(&["cluster", "ca", "init", "--dir", tls.to_str().unwrap()]);
    for i in 1..=nodes {
        run(&["cluster", "cert", "issue", "--node-id", &i.to_string(), "--dir", tls.to_str().unwrap()]);
    }
    tls
}

/// One `rill serve` process in its namespace.
pub struct Node {
    pub id: u32,
    pub child: Child,
    pub log: PathBuf,
    pub data: PathBuf,
    pub ip: String,
}

impl Node {
    /// Starts node `id` (namespace `ns`) with `seeds`; waits until it listens.
    pub fn start(net: &Net, id: u32, dir: &Path, tls: &Path, seeds: &str) -> Node {
        Node::start_with(net, id, dir, tls, seeds, &[])
    }

    /// As [`Node::start`], with more `rill serve` arguments.
    pub fn start_with(net: &Net, id: u32, dir: &Path, tls: &Path, seeds: &str, extra: &[&str]) -> Node {
        let slot = id;
        let data = dir.join(format!("node-{slot}"));
        let log = dir.join(format!("node-{slot}.log"));
        let ip = net.ip(slot);
        let out = std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &net.namespace(slot), RILL, "serve"])
            .args(["--data-dir", data.to_str().unwrap(), "--profile", "small-vm", "--cores", "0"])
            .args(["--native-listen", &format!("{ip}:9300"), "--kafka-listen", &format!("{ip}:9092")])
            .args(["--node-id", &id.to_string(), "--cluster-listen", &format!("{ip}:9500")])
            .args(["--seeds", seeds, "--cluster-tls-dir", tls.to_str().unwrap()])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .expect("rill serve starts");
        let node = Node { id, child, log, data, ip };
        node.wait_log("rill listening on", Duration::from_secs(30));
        node
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the node's log contains `what`.
    pub fn wait_log(&self, what: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.log_text().contains(what) {
            assert!(
                Instant::now() < deadline,
                "node {} never logged {what:?}:\n{}",
                self.id,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn native(&self) -> String {
        format!("{}:9300", self.ip)
    }

    pub fn kafka(&self) -> String {
        format!("{}:9092", self.ip)
    }

    /// Runs `rill <args> --broker <this node>`; `Err(stderr)` if it fails.
    pub fn rill(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(RILL).args(args).args(["--broker", &self.native()]).output().unwrap();
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// `kcat -L` against this node.
    pub fn kcat_metadata(&self) -> String {
        let out =
            Command::new("kcat").args(["-b", &self.kafka(), "-L", "-m", "5"]).output().expect("kcat runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The controller as this node's Kafka metadata names it.
    pub fn controller(&self) -> Option<u32> {
        controller_in(&self.kcat_metadata())
    }

    /// The topics in this node's adopted view (`metadata.toml`).
    pub fn view(&self) -> String {
        std::fs::read_to_string(self.data.join("metadata.toml")).unwrap_or_default()
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The controller a `kcat -L` output names.
pub fn controller_in(metadata: &str) -> Option<u32> {
    metadata
        .lines()
        .find(|l| l.contains("(controller)"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
}

/// `1@ip:9500,2@ip:9500,...`
pub fn seeds(net: &Net, nodes: u32) -> String {
    (1..=nodes).map(|i| format!("{i}@{}:9500", net.ip(i))).collect::<Vec<_>>().join(",")
}

/// Polls `f` until it returns `Some`, at most `timeout`.
pub fn eventually<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
