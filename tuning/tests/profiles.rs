//! Profiles, topology and kernel checks against recorded sysfs/procfs snapshots: the 2-vCPU VM
//! this project is developed on, and a made-up two-socket, 64-core SMT server.

use std::path::{Path, PathBuf};

use rill_tuning::{
    CorePolicy, CoreSelection, DiskFacts, Error, HostFacts, HostRoots, Profile, SHIPPED, Verdict, apply,
    check,
};

/// Expands a snapshot file into `<tmp>/sys` and `<tmp>/proc`.
fn expand(name: &str) -> (tempfile::TempDir, HostRoots) {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let (head, content) = line.split_once('\t').unwrap();
        let (root, rel) = head.split_once(' ').unwrap();
        match root {
            "link" => {
                let path = dir.path().join(rel);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::os::unix::fs::symlink(content, &path).unwrap();
            }
            "sys" | "proc" => {
                let path = dir.path().join(root).join(rel);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, format!("{content}\n")).unwrap();
            }
            other => panic!("unknown root {other}"),
        }
    }
    let roots = HostRoots { sys: dir.path().join("sys"), proc: dir.path().join("proc") };
    (dir, roots)
}

#[test]
fn topology_of_the_development_vm() {
    let (_dir, roots) = expand("dev-vm-2cpu.sysfs");
    let host = HostFacts::read_at(&roots).unwrap();
    let t = &host.topology;
    assert_eq!(t.online(), [0, 1]);
    assert!(!t.smt());
    assert_eq!(t.numa_nodes().len(), 1);
    assert_eq!(t.one_per_physical_core(), [0, 1]);
    assert_eq!(host.memory_bytes, 24_684_092 * 1024);
}

#[test]
fn topology_of_a_two_socket_smt_server() {
    let (_dir, roots) = expand("two-socket-64-core-smt.sysfs");
    let host = HostFacts::read_at(&roots).unwrap();
    let t = &host.topology;
    assert_eq!(t.online().len(), 128);
    assert!(t.smt());
    assert_eq!(t.physical_cores().len(), 64);
    let nodes = t.numa_nodes();
    assert_eq!(nodes.len(), 2);
    assert!(nodes[&0].contains(&0) && nodes[&0].contains(&64) && nodes[&1].contains(&32));
    let physical = t.one_per_physical_core();
    assert_eq!(physical.len(), 64);
    assert!(physical.iter().all(|&c| c < 64), "no SMT sibling is picked: {physical:?}");
    assert_eq!(&physical[..4], &[0, 32, 1, 33], "consecutive shards alternate NUMA nodes");
    assert_eq!(host.hostname, "big-iron-01");
}

#[test]
fn shipped_profiles_are_valid_and_round_trip() {
    for (name, _) in SHIPPED {
        let profile = Profile::load(name).unwrap();
        assert_eq!(profile.name, name);
        let again = Profile::parse(&profile.to_toml(), "round trip").unwrap();
        assert_eq!(again, profile);
    }
    let (_dir, roots) = expand("two-socket-64-core-smt.sysfs");
    let server = HostFacts::read_at(&roots).unwrap();
    let nvme = Profile::load("nvme-server").unwrap();
    nvme.check_host(&server).unwrap();
    assert_eq!(nvme.shard_cores(&server).unwrap().len(), 64);
    let small = Profile::load("small-vm").unwrap();
    let (_dir2, vm_roots) = expand("dev-vm-2cpu.sysfs");
    let vm = HostFacts::read_at(&vm_roots).unwrap();
    small.check_host(&vm).unwrap();
    assert_eq!(small.shard_cores(&vm).unwrap(), [0, 1]);
    let config = small.log_config();
    config.validate().unwrap();
    assert_eq!(config.segment_size_bytes_max, 256 << 20);
    // One log never queues more than the per-log cap, however large the shard's budget.
    let derived = Profile::derive(&server);
    assert!(derived.log_config().write_buffer_bytes_max as u64 <= rill_tuning::LOG_WRITE_BUFFER_BYTES_MAX);
    let many = nvme.log_config_for(1000).write_buffer_bytes_max as u64;
    assert!(many >= (8 << 20) + 64, "a batch always fits: {many}");
}

fn refused_field(result: rill_tuning::Result<impl std::fmt::Debug>) -> String {
    match result {
        Err(Error::Field { field, reason }) => format!("{field}: {reason}"),
        other => panic!("expected a field error, got {other:?}"),
    }
}

#[test]
fn bad_profiles_are_refused_naming_the_field() {
    let (_dir, roots) = expand("dev-vm-2cpu.sysfs");
    let vm = HostFacts::read_at(&roots).unwrap();
    let base = Profile::load("small-vm").unwrap();

    let mut p = base.clone();
    p.cpu.cores = CoreSelection::List(vec![0, 7]);
    let e = refused_field(p.check_host(&vm));
    assert!(e.starts_with("cpu.cores") && e.contains("CPU 7"), "{e}");

    let mut p = base.clone();
    p.memory.cache_bytes_per_shard = 64 << 30;
    assert!(refused_field(p.check_host(&vm)).starts_with("memory:"));

    let mut p = base.clone();
    p.memory.write_buffer_bytes_per_shard = 1_000_000;
    assert!(refused_field(p.check_shape()).starts_with("memory.write_buffer_bytes_per_shard"));

    let mut p = base.clone();
    p.log.durability = "sometimes".into();
    assert!(refused_field(p.check_shape()).starts_with("log.durability"));

    let mut p = base.clone();
    p.log.recovery_checkpoint_interval_ms = 0;
    assert!(refused_field(p.check_shape()).starts_with("log.recovery_checkpoint_interval_ms"));

    let mut p = base.clone();
    p.io.uring_queue_depth = 100;
    assert!(refused_field(p.check_shape()).starts_with("io.uring_queue_depth"));

    let mut p = base.clone();
    p.network.request_bytes_max = 1 << 20;
    assert!(refused_field(p.check_shape()).starts_with("network.request_bytes_max"));

    let mut p = base.clone();
    p.memory.connection_buffer_bytes_per_shard = 1 << 20;
    assert!(refused_field(p.check_shape()).starts_with("memory.connection_buffer_bytes_per_shard"));

    let mut p = base.clone();
    p.io.read_ahead_chunks = 65;
    assert!(refused_field(p.check_shape()).starts_with("io.read_ahead_chunks"));
    // Optional: profiles written before it existed get the storage default; set, it reaches the log.
    let old = base.to_toml().replace("read_ahead_chunks = 2\n", "");
    assert_ne!(old, base.to_toml());
    assert_eq!(Profile::parse(&old, "old.toml").unwrap().log_config().read_ahead_chunks, 2);
    let mut p = base.clone();
    p.io.read_ahead_chunks = 5;
    assert_eq!(p.log_config().read_ahead_chunks, 5);

    // [cluster]: QUIC's 1,200-byte floor, keep-alives inside the idle timeout, a stream window
    // inside the link's; profiles from before clusters get the defaults.
    let mut p = base.clone();
    p.cluster.initial_mtu = 1_000;
    assert!(refused_field(p.check_shape()).starts_with("cluster.initial_mtu"));
    let mut p = base.clone();
    p.cluster.mtu_max = 1_300;
    assert!(refused_field(p.check_shape()).starts_with("cluster.initial_mtu"));
    let mut p = base.clone();
    p.cluster.keep_alive_ms = p.cluster.idle_timeout_ms;
    assert!(refused_field(p.check_shape()).starts_with("cluster.keep_alive_ms"));
    let mut p = base.clone();
    p.cluster.stream_window_bytes = p.cluster.connection_window_bytes + 1;
    assert!(refused_field(p.check_shape()).starts_with("cluster.stream_window_bytes"));
    let mut p = base.clone();
    p.cluster.peer_queue_bytes = 0;
    assert!(refused_field(p.check_shape()).starts_with("cluster.peer_queue_bytes"));
    let toml = base.to_toml();
    let start = toml.find("[cluster]").expect("shipped profiles have a [cluster] section");
    let end = start + toml[start..].find("\n\n").unwrap();
    let old = format!("{}{}", &toml[..start], &toml[end..]);
    assert_eq!(Profile::parse(&old, "old.toml").unwrap().cluster, rill_tuning::ClusterSection::default());
    let text = toml.replace("[cluster]", "[cluster]\nmtu = 9000");
    assert!(matches!(Profile::parse(&text, "typo.toml"), Err(Error::Parse { .. })));

    let text = base.to_toml().replace("[io]", "[io]\nturbo = true");
    assert!(matches!(Profile::parse(&text, "typo.toml"), Err(Error::Parse { .. })));
    assert!(matches!(Profile::load("/nonexistent/profile.toml"), Err(Error::Io { .. })));
}

#[test]
fn derived_profiles_fit_their_host() {
    for (snapshot, policy) in
        [("dev-vm-2cpu.sysfs", CorePolicy::All), ("two-socket-64-core-smt.sysfs", CorePolicy::Physical)]
    {
        let (_dir, roots) = expand(snapshot);
        let host = HostFacts::read_at(&roots).unwrap();
        let derived = Profile::derive(&host);
        assert_eq!(derived.cpu.cores, CoreSelection::Policy(policy), "{snapshot}");
        derived.check_host(&host).unwrap();
    }
    // And on the live host running this test.
    let live = HostFacts::read().unwrap();
    Profile::derive(&live).check_host(&live).unwrap();
}

#[test]
fn disk_facts_from_snapshots() {
    let (dir, roots) = expand("two-socket-64-core-smt.sysfs");
    let mounts = "27 1 259:1 / /data rw - xfs /dev/nvme0n1p1 rw\n";
    let facts = DiskFacts::from_parts(Path::new("/data/rill"), mounts, &roots.sys, 259, 1).unwrap();
    assert_eq!(facts.device.as_deref(), Some("nvme0n1"), "a partition is lifted to its disk");
    assert_eq!((facts.fs_type.as_str(), facts.mount_point.clone()), ("xfs", PathBuf::from("/data")));
    assert_eq!(facts.rotational, Some(false));
    assert_eq!(facts.scheduler(), Some("mq-deadline"));
    assert_eq!(facts.nr_requests, Some(255));
    assert_eq!(facts.logical_block_bytes, Some(4096));
    drop(dir);
    let (_dir, roots) = expand("dev-vm-2cpu.sysfs");
    let facts = DiskFacts::from_parts(
        Path::new("/work"),
        "27 1 254:0 / / rw - ext4 /dev/vda rw\n",
        &roots.sys,
        254,
        0,
    )
    .unwrap();
    assert_eq!((facts.device.as_deref(), facts.write_cache.as_deref()), (Some("vda"), Some("write back")));
}

#[test]
fn check_gives_exact_commands_and_apply_fixes_them() {
    let (_dir, roots) = expand("two-socket-64-core-smt.sysfs");
    let host = HostFacts::read_at(&roots).unwrap();
    let profile = Profile::load("nvme-server").unwrap();
    let disk = DiskFacts::from_parts(
        Path::new("/data"),
        "1 1 259:1 / /data rw - xfs /dev/nvme0n1p1 rw\n",
        &roots.sys,
        259,
        1,
    )
    .unwrap();
    let cpus = profile.shard_cores(&host).unwrap();
    let findings = check(&profile, &roots, Some(&disk), &cpus);
    let find = |name: &str| {
        findings.iter().find(|f| f.setting == name).unwrap_or_else(|| panic!("{name}: {findings:#?}"))
    };
    let sched = find("nvme0n1 I/O scheduler");
    assert_eq!((sched.verdict, sched.current.as_str()), (Verdict::Advice, "mq-deadline"));
    assert_eq!(sched.command.as_deref(), Some("echo none > /sys/block/nvme0n1/queue/scheduler"));
    assert_eq!(find("vm.swappiness").command.as_deref(), Some("sysctl -w vm.swappiness=1"));
    assert_eq!(find("fs.aio-max-nr").verdict, Verdict::Advice);
    assert_eq!(find("net.core.rmem_max").verdict, Verdict::Advice);
    assert_eq!(find("transparent huge pages").verdict, Verdict::Advice);
    assert_eq!(find("cpu32 governor").verdict, Verdict::Advice);
    assert_eq!(find("kernel.io_uring_disabled").verdict, Verdict::Ok);

    let applied = apply(&findings, false).unwrap();
    assert!(applied.len() >= 8, "{applied:#?}");
    let after = check(&profile, &roots, Some(&disk), &cpus);
    for f in after.iter().filter(|f| f.setting != "locked-memory limit (RLIMIT_MEMLOCK)") {
        assert_ne!(f.verdict, Verdict::Advice, "still off after apply: {f:?}");
    }
}

/// The recovery-point interval is a profile setting the logs get (before, every log wrote its
/// checkpoint once a minute whatever the profile said); a profile file written before the
/// setting existed still loads, with Kafka's default of a minute.
#[test]
fn the_recovery_checkpoint_interval_reaches_the_logs_and_older_profiles_keep_a_minute() {
    let mut p = Profile::load("small-vm").unwrap();
    assert_eq!(p.log_config().recovery_checkpoint_interval_ms, 60_000);
    p.log.recovery_checkpoint_interval_ms = 5_000;
    assert_eq!(p.log_config().recovery_checkpoint_interval_ms, 5_000);
    let older: String = Profile::load("small-vm")
        .unwrap()
        .to_toml()
        .lines()
        .filter(|l| !l.starts_with("recovery_checkpoint_interval_ms"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(!older.contains("recovery_checkpoint_interval_ms"));
    let loaded = Profile::parse(&older, "an older profile").unwrap();
    assert_eq!(loaded.log.recovery_checkpoint_interval_ms, 60_000);
}
