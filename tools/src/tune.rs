//! `rill tune probe|stalls|check|apply|show`.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use rill_tuning::{
    CpuStalls, DiskFacts, HostFacts, HostRoots, Measured, ProbeSettings, Profile, StallSettings, Verdict,
};

/// The `rill tune` subcommands.
#[derive(Subcommand)]
pub enum TuneCommand {
    /// Read the CPU topology, memory and data disk, measure the disk with io_uring O_DIRECT
    /// (tens of seconds), then write a profile and print a summary.
    Probe {
        /// Directory on the data disk (a scratch file is written there and removed).
        #[arg(long, default_value = "./data")]
        data_dir: PathBuf,
        /// Where to write the profile.
        #[arg(long, default_value = "rill-profile.toml")]
        output: PathBuf,
        /// A short probe (256 MiB, two queue depths) for tests and impatient people.
        #[arg(long)]
        quick: bool,
        /// Queue depth of the sequential passes.
        #[arg(long, default_value_t = 4)]
        seq_queue_depth: u32,
    },
    /// Spin on the shard CPUs, all at once, and report how often and how long each was taken
    /// away (hypervisor preemption, interrupts, other tasks): the floor under the broker's tail
    /// latency on this host. Run it on an otherwise idle host.
    Stalls {
        /// CPUs to spin on, e.g. 0,1 (default: the derived profile's shard CPUs).
        #[arg(long)]
        cpus: Option<String>,
        /// Seconds to spin.
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// Gaps longer than this many microseconds count as stalls.
        #[arg(long, default_value_t = 100)]
        threshold_us: u64,
    },
    /// Compare the host's kernel and device settings with a profile's; print each as ok or
    /// advice with the command that fixes it. Changes nothing.
    Check {
        /// Shipped profile name (small-vm, nvme-server) or a profile file; default: derived.
        #[arg(long)]
        profile: Option<String>,
        /// Directory on the data disk.
        #[arg(long, default_value = "./data")]
        data_dir: PathBuf,
    },
    /// Apply the settings `check` advises (root only; asks nothing, changes only what differs).
    Apply {
        /// Shipped profile name or file; default: derived from the host.
        #[arg(long)]
        profile: Option<String>,
        /// Directory on the data disk.
        #[arg(long, default_value = "./data")]
        data_dir: PathBuf,
    },
    /// Print a profile as TOML: a shipped one, a file, or the one derived from this host.
    Show {
        /// Shipped profile name or file; default: derived from the host.
        #[arg(long)]
        profile: Option<String>,
    },
}

/// Runs one `rill tune` subcommand.
pub fn run(cmd: TuneCommand) -> anyhow::Result<()> {
    match cmd {
        TuneCommand::Probe { data_dir, output, quick, seq_queue_depth } => {
            probe(data_dir, output, quick, seq_queue_depth)
        }
        TuneCommand::Stalls { cpus, seconds, threshold_us } => stalls(cpus, seconds, threshold_us),
        TuneCommand::Check { profile, data_dir } => check(profile, data_dir, false),
        TuneCommand::Apply { profile, data_dir } => check(profile, data_dir, true),
        TuneCommand::Show { profile } => {
            let host = HostFacts::read().context("reading host facts")?;
            let profile = resolve(profile.as_deref(), &host)?;
            print!("{}", profile.to_toml());
            Ok(())
        }
    }
}

fn resolve(name: Option<&str>, host: &HostFacts) -> anyhow::Result<Profile> {
    let profile = match name {
        Some(name) => Profile::load(name)?,
        None => Profile::derive(host),
    };
    profile.check_host(host)?;
    Ok(profile)
}

fn probe(data_dir: PathBuf, output: PathBuf, quick: bool, seq_queue_depth: u32) -> anyhow::Result<()> {
    std::fs::create_dir_all(&data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let host = HostFacts::read().context("reading host facts")?;
    let disk = DiskFacts::read(&data_dir).context("inspecting the data disk")?;
    let mut settings =
        if quick { ProbeSettings::quick(data_dir.clone()) } else { ProbeSettings::full(data_dir.clone()) };
    settings.seq_queue_depth = seq_queue_depth;
    let started = std::time::Instant::now();
    let tty = std::io::stderr().is_terminal();
    let mut measured = rill_tuning::probe_disk(settings, move |step| {
        let elapsed = started.elapsed().as_secs_f64();
        if tty {
            eprint!("\r\x1b[2K[{elapsed:>5.1}s] measuring {step}");
            let _ = std::io::stderr().flush();
        } else {
            eprintln!("[{elapsed:>5.1}s] measuring {step}");
        }
    })?;
    let done = if tty { "\r\x1b[2K" } else { "" };
    let mut profile = Profile::derive(&host);
    let settings = StallSettings {
        cpus: runnable(profile.shard_cores(&host)?)?,
        duration: std::time::Duration::from_secs_f64(if quick { 0.5 } else { 3.0 }),
        threshold: std::time::Duration::from_micros(STALL_THRESHOLD_US),
    };
    eprintln!("{done}[{:>5.1}s] measuring CPU stalls", started.elapsed().as_secs_f64());
    // The disk figures are the probe's purpose; a host where threads cannot be pinned still
    // gets its profile, without stall figures.
    match rill_tuning::probe_stalls(&settings) {
        Ok(stalls) => measured.cpu_stalls = stalls,
        Err(e) => eprintln!("rill: CPU stalls not measured: {e}"),
    }
    eprintln!("[{:>5.1}s] done", started.elapsed().as_secs_f64());
    profile.io.uring_queue_depth = queue_depth_for(&measured);
    profile.measured = Some(measured.clone());
    profile.check_host(&host)?;
    std::fs::write(&output, profile.to_toml()).with_context(|| format!("writing {}", output.display()))?;
    print_summary(&host, &disk, &measured, &profile);
    println!("profile written to {}", output.display());
    Ok(())
}

/// Ring depth: four times the smallest queue depth that reaches 90% of the best random-read
/// IOPS, as a power of two between 64 and 4096.
fn queue_depth_for(m: &Measured) -> u32 {
    let best = m.rand_read_iops.iter().map(|f| f.iops).fold(0.0, f64::max);
    let knee = m.rand_read_iops.iter().find(|f| f.iops >= best * 0.9).map_or(32, |f| f.queue_depth);
    (knee * 4).next_power_of_two().clamp(64, 4096)
}

fn print_summary(host: &HostFacts, disk: &DiskFacts, m: &Measured, profile: &Profile) {
    let t = &host.topology;
    let rows = [
        ("CPUs online", t.online().len().to_string()),
        ("physical cores", t.physical_cores().len().to_string()),
        ("SMT", if t.smt() { "yes" } else { "no" }.to_string()),
        ("NUMA nodes", t.numa_nodes().len().to_string()),
        ("memory", format!("{:.1} GiB", host.memory_bytes as f64 / (1u64 << 30) as f64)),
        ("data dir", disk.dir.display().to_string()),
        ("filesystem", format!("{} on {}", disk.fs_type, disk.mount_point.display())),
        ("device", disk.device.clone().unwrap_or_else(|| "unknown".into())),
        ("rotational", disk.rotational.map_or("unknown".into(), |r| r.to_string())),
        ("scheduler", disk.scheduler().unwrap_or("unknown").to_string()),
        ("write cache", disk.write_cache.clone().unwrap_or_else(|| "unknown".into())),
        ("seq write (1 MiB)", format!("{:.0} MB/s", m.seq_write_mb_s)),
        ("seq read (1 MiB)", format!("{:.0} MB/s", m.seq_read_mb_s)),
        ("4 KiB write + fdatasync", format!("p50 {} us, p99 {} us", m.fdatasync_p50_us, m.fdatasync_p99_us)),
    ];
    println!();
    for (k, v) in rows {
        println!("{k:<26} {v}");
    }
    for (name, figures) in
        [("random 4 KiB reads", &m.rand_read_iops), ("random 4 KiB writes", &m.rand_write_iops)]
    {
        let cells: Vec<String> =
            figures.iter().map(|f| format!("QD{} {:.0}", f.queue_depth, f.iops)).collect();
        println!("{:<26} {} IOPS", name, cells.join(", "));
    }
    if !m.cpu_stalls.is_empty() {
        println!("{:<26} {}", format!("CPU stalls > {STALL_THRESHOLD_US} us"), stall_summary(&m.cpu_stalls));
    }
    println!("{:<26} {}", "shards", profile.shard_cores(host).map(|c| c.len()).unwrap_or(0));
    println!("{:<26} {}", "io_uring depth", profile.io.uring_queue_depth);
}

/// Gaps the probe counts as stalls: well above a clock read or a timer tick, well below a
/// broker's latency targets.
const STALL_THRESHOLD_US: u64 = 100;

/// One line for all CPUs: the worst CPU's figures.
fn stall_summary(stalls: &[CpuStalls]) -> String {
    let worst = |f: fn(&CpuStalls) -> f64| stalls.iter().map(f).fold(0.0, f64::max);
    format!(
        "up to {:.1}/s per CPU, longest {} us, {:.2}% of the time (all shard CPUs busy)",
        worst(|s| s.per_second()),
        stalls.iter().map(|s| s.max_us).max().unwrap_or(0),
        worst(|s| s.stalled_fraction()) * 100.0
    )
}

/// The CPUs of `cpus` this process may run on (a container's cpuset may exclude some).
fn runnable(cpus: Vec<usize>) -> anyhow::Result<Vec<usize>> {
    let allowed = rill_tuning::allowed_cpus()?;
    let runnable: Vec<usize> = cpus.iter().copied().filter(|c| allowed.contains(c)).collect();
    anyhow::ensure!(
        !runnable.is_empty(),
        "none of CPUs {cpus:?} is in this process's affinity mask {allowed:?}"
    );
    Ok(runnable)
}

fn stalls(cpus: Option<String>, seconds: f64, threshold_us: u64) -> anyhow::Result<()> {
    let max = rill_tuning::STALL_PROBE_SECONDS_MAX as f64;
    anyhow::ensure!(seconds > 0.0 && seconds <= max, "--seconds must be above 0 and at most {max}");
    let host = HostFacts::read().context("reading host facts")?;
    let cpus = match cpus {
        Some(list) => rill_tuning::parse_cpu_list(&list).map_err(|e| anyhow::anyhow!("--cpus: {e}"))?,
        None => runnable(Profile::derive(&host).shard_cores(&host)?)?,
    };
    for cpu in &cpus {
        anyhow::ensure!(host.topology.online().contains(cpu), "CPU {cpu} is not online");
    }
    let settings = StallSettings {
        cpus,
        duration: std::time::Duration::from_secs_f64(seconds),
        threshold: std::time::Duration::from_micros(threshold_us),
    };
    eprintln!("spinning on CPUs {:?} for {seconds} s ...", settings.cpus);
    let figures = rill_tuning::probe_stalls(&settings)?;
    println!("| CPU | stalls > {threshold_us} us | per second | stalled | p99 | longest |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for s in &figures {
        println!(
            "| {} | {} | {:.1} | {:.3}% | {} us | {} us |",
            s.cpu,
            s.stalls,
            s.per_second(),
            s.stalled_fraction() * 100.0,
            s.p99_us,
            s.max_us
        );
    }
    Ok(())
}

fn check(profile: Option<String>, data_dir: PathBuf, apply: bool) -> anyhow::Result<()> {
    let host = HostFacts::read().context("reading host facts")?;
    let profile = resolve(profile.as_deref(), &host)?;
    let disk = std::fs::create_dir_all(&data_dir).ok().and_then(|_| DiskFacts::read(&data_dir).ok());
    let cpus = profile.shard_cores(&host)?;
    let findings = rill_tuning::check(&profile, &HostRoots::default(), disk.as_ref(), &cpus);
    println!("profile: {}", profile.name);
    println!("{:<40} {:<8} {:<28} {:<24} command", "setting", "status", "current", "wanted");
    for f in &findings {
        let status = match f.verdict {
            Verdict::Ok => "ok",
            Verdict::Advice => "advice",
            Verdict::NotApplicable => "n/a",
        };
        println!(
            "{:<40} {:<8} {:<28} {:<24} {}",
            f.setting,
            status,
            f.current,
            f.wanted,
            f.command.as_deref().unwrap_or("")
        );
    }
    if apply {
        let applied = rill_tuning::apply(&findings, true)?;
        for f in &applied {
            println!("applied: {} -> {}", f.setting, f.command.as_deref().unwrap_or(""));
        }
        println!("{} settings applied", applied.len());
    } else {
        let advice = findings.iter().filter(|f| f.verdict == Verdict::Advice).count();
        println!("{advice} settings differ; `rill tune apply` (as root) changes them");
    }
    Ok(())
}
