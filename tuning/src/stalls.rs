//! The CPU stall probe: how often, and for how long, a thread that never sleeps loses its CPU.
//!
//! One thread per CPU, pinned, spins reading the monotonic clock; any gap between two readings
//! longer than the threshold is time the CPU was taken from it (a hypervisor running something
//! else on the physical core, interrupts, SMIs, other tasks), as cyclictest and hwlatdetect
//! measure it. All threads spin at once, as a loaded broker's shards do: on many virtual machines
//! a CPU is preempted far more often while its siblings are busy too. A shard loses exactly such
//! gaps, and every request in flight on it waits them out, so they set a floor under tail
//! latency that no broker code can lower.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Which CPUs to probe and for how long.
#[derive(Clone, Debug)]
pub struct StallSettings {
    /// CPUs to spin on, all at the same time.
    pub cpus: Vec<usize>,
    /// How long each spins.
    pub duration: Duration,
    /// Gaps between clock readings longer than this count as stalls.
    pub threshold: Duration,
}

/// What one CPU lost while spinning.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CpuStalls {
    /// The CPU.
    pub cpu: usize,
    /// Microseconds spun.
    pub measured_us: u64,
    /// Gaps above the threshold.
    pub stalls: u64,
    /// Their total, microseconds.
    pub stalled_us: u64,
    /// 99th percentile of the gaps above the threshold, microseconds.
    pub p99_us: u64,
    /// The longest gap, microseconds.
    pub max_us: u64,
}

impl CpuStalls {
    /// Stalls per second of spinning.
    pub fn per_second(&self) -> f64 {
        self.stalls as f64 / (self.measured_us.max(1) as f64 / 1e6)
    }

    /// The fraction of the time the CPU was taken away.
    pub fn stalled_fraction(&self) -> f64 {
        self.stalled_us as f64 / self.measured_us.max(1) as f64
    }
}

/// Gaps most kept for the percentile; the count, total and maximum cover every gap.
const GAPS_KEPT_MAX: usize = 1 << 16;

/// Accumulates the gaps of one spinning thread.
#[derive(Debug)]
pub struct StallCounter {
    threshold_ns: u64,
    gaps_ns: Vec<u64>,
    stalls: u64,
    stalled_ns: u64,
    max_ns: u64,
}

impl StallCounter {
    /// A counter for gaps above `threshold`.
    pub fn new(threshold: Duration) -> StallCounter {
        StallCounter {
            threshold_ns: threshold.as_nanos() as u64,
            gaps_ns: Vec::new(),
            stalls: 0,
            stalled_ns: 0,
            max_ns: 0,
        }
    }

    /// Notes the time between two consecutive clock readings.
    pub fn observe(&mut self, gap_ns: u64) {
        if gap_ns <= self.threshold_ns {
            return;
        }
        self.stalls += 1;
        self.stalled_ns += gap_ns;
        self.max_ns = self.max_ns.max(gap_ns);
        if self.gaps_ns.len() < GAPS_KEPT_MAX {
            self.gaps_ns.push(gap_ns);
        }
    }

    /// The figures for `cpu` after spinning `measured`.
    pub fn finish(mut self, cpu: usize, measured: Duration) -> CpuStalls {
        self.gaps_ns.sort_unstable();
        let p99_ns = match self.gaps_ns.len() {
            0 => 0,
            n => self.gaps_ns[((n * 99).div_ceil(100)).clamp(1, n) - 1],
        };
        CpuStalls {
            cpu,
            measured_us: measured.as_micros() as u64,
            stalls: self.stalls,
            stalled_us: self.stalled_ns / 1000,
            p99_us: p99_ns / 1000,
            max_us: self.max_ns / 1000,
        }
    }
}

/// Longest spin a probe may ask for.
pub const STALL_PROBE_SECONDS_MAX: u64 = 3600;

/// Spins on every CPU of `settings` at once and reports what each lost, in the order given.
///
/// Every thread is started and pinned before any spins; if one cannot be started or pinned,
/// none spins, all are joined, and the error is returned.
pub fn probe_stalls(settings: &StallSettings) -> Result<Vec<CpuStalls>> {
    if settings.cpus.is_empty() {
        return Err(Error::Probe("no CPUs to probe".into()));
    }
    if settings.duration > Duration::from_secs(STALL_PROBE_SECONDS_MAX) {
        return Err(Error::Probe(format!("a stall probe spins at most {STALL_PROBE_SECONDS_MAX} s")));
    }
    let allowed = allowed_cpus()?;
    if let Some(cpu) = settings.cpus.iter().find(|c| !allowed.contains(c)) {
        return Err(Error::Probe(format!("this process may not run on CPU {cpu} (allowed: {allowed:?})")));
    }
    // 0: wait; 1: spin; 2: give up (another thread could not start or pin).
    let go = Arc::new(AtomicU8::new(0));
    let ready = Arc::new(AtomicUsize::new(0));
    let mut threads = Vec::new();
    let mut failure = None;
    for &cpu in &settings.cpus {
        let (go, ready, duration, threshold) =
            (go.clone(), ready.clone(), settings.duration, settings.threshold);
        let spawned = std::thread::Builder::new().name(format!("rill-stalls-{cpu}")).spawn(move || {
            let pinned = pin_to(cpu);
            ready.fetch_add(1, Ordering::SeqCst);
            loop {
                match go.load(Ordering::SeqCst) {
                    0 => std::hint::spin_loop(),
                    1 => break,
                    _ => return pinned.map(|()| None),
                }
            }
            pinned.map(|()| Some(spin(cpu, duration, threshold)))
        });
        match spawned {
            Ok(handle) => threads.push(handle),
            Err(e) => {
                failure = Some(Error::Probe(format!("starting the thread for CPU {cpu}: {e}")));
                break;
            }
        }
    }
    if failure.is_none() {
        while ready.load(Ordering::SeqCst) < threads.len() {
            std::hint::spin_loop();
        }
    }
    go.store(if failure.is_none() { 1 } else { 2 }, Ordering::SeqCst);
    let mut figures = Vec::new();
    for handle in threads {
        match handle.join() {
            Ok(Ok(Some(f))) => figures.push(f),
            Ok(Ok(None)) => {}
            Ok(Err(e)) => failure = failure.or(Some(e)),
            Err(_) => failure = failure.or(Some(Error::Probe("a stall probe thread panicked".into()))),
        }
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(figures),
    }
}

/// The CPUs this process may run on (its affinity mask), ascending.
pub fn allowed_cpus() -> Result<Vec<usize>> {
    let ids = core_affinity::get_core_ids()
        .ok_or_else(|| Error::Probe("reading the CPU affinity mask failed".into()))?;
    let mut cpus: Vec<usize> = ids.into_iter().map(|c| c.id).collect();
    cpus.sort_unstable();
    Ok(cpus)
}

fn spin(cpu: usize, duration: Duration, threshold: Duration) -> CpuStalls {
    let mut counter = StallCounter::new(threshold);
    let start = Instant::now();
    let end = start + duration;
    let mut prev = start;
    loop {
        let now = Instant::now();
        counter.observe(now.duration_since(prev).as_nanos() as u64);
        prev = now;
        if now >= end {
            break;
        }
    }
    counter.finish(cpu, prev.duration_since(start))
}

fn pin_to(cpu: usize) -> Result<()> {
    if core_affinity::set_for_current(core_affinity::CoreId { id: cpu }) {
        Ok(())
    } else {
        Err(Error::Probe(format!("pinning to CPU {cpu} failed")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_gaps_above_the_threshold() {
        let mut c = StallCounter::new(Duration::from_micros(100));
        for gap_ns in [50, 100_000, 100_001, 2_000_000, 30, 500_000] {
            c.observe(gap_ns);
        }
        let s = c.finish(3, Duration::from_secs(2));
        assert_eq!((s.cpu, s.measured_us, s.stalls), (3, 2_000_000, 3));
        assert_eq!(s.stalled_us, (100_001 + 2_000_000 + 500_000) / 1000);
        assert_eq!((s.max_us, s.p99_us), (2000, 2000));
        assert!((s.per_second() - 1.5).abs() < 1e-9);
        assert!((s.stalled_fraction() - 2600.001 / 2_000_000.0).abs() < 1e-6);
    }

    #[test]
    fn p99_is_the_gap_below_which_99_percent_fall() {
        let mut c = StallCounter::new(Duration::ZERO);
        for us in 1..=200u64 {
            c.observe(us * 1000);
        }
        let s = c.finish(0, Duration::from_secs(1));
        assert_eq!((s.stalls, s.p99_us, s.max_us), (200, 198, 200));
        let quiet = StallCounter::new(Duration::from_millis(1)).finish(0, Duration::from_secs(1));
        assert_eq!((quiet.stalls, quiet.p99_us, quiet.max_us, quiet.stalled_us), (0, 0, 0, 0));
    }

    #[test]
    fn spins_for_the_duration_on_a_real_cpu() {
        let cpu = allowed_cpus().expect("affinity mask")[0];
        let settings = StallSettings {
            cpus: vec![cpu],
            duration: Duration::from_millis(50),
            threshold: Duration::from_micros(50),
        };
        let [s] = <[CpuStalls; 1]>::try_from(probe_stalls(&settings).expect("probe runs")).expect("one CPU");
        assert_eq!(s.cpu, cpu);
        assert!(s.measured_us >= 50_000, "spun {} us", s.measured_us);
        assert!(s.stalled_us <= s.measured_us && s.max_us <= s.stalled_us);
        let none = StallSettings { cpus: vec![], ..settings.clone() };
        assert!(probe_stalls(&none).is_err());
        let forbidden = StallSettings { cpus: vec![cpu, libc::CPU_SETSIZE as usize - 1], ..settings.clone() };
        assert!(probe_stalls(&forbidden).is_err(), "a CPU outside the affinity mask is refused");
        let endless =
            StallSettings { duration: Duration::from_secs(STALL_PROBE_SECONDS_MAX + 1), ..settings };
        assert!(probe_stalls(&endless).is_err());
    }
}
