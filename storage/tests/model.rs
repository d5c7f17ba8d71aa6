//! Property test: random appends, reads, rolls, retention, truncations and reopens agree with a
//! plain in-memory model of the log. `RILL_SLOW=1` runs many more cases.

mod common;

use std::rc::Rc;

use bytes::Bytes;
use common::*;
use proptest::prelude::*;
use rill_storage::{Batch, Clock, Durability, Log, LogConfig, ManualClock};

#[derive(Clone, Debug)]
enum Op {
    Append { len: usize, records: u32, ts: i64 },
    Read { pick: usize, within: u32, bytes_max: usize },
    Advance { ms: i64 },
    Retention,
    Truncate { pick: usize, within: u32 },
    Reopen,
    Sync,
    FindTimestamp { ts: i64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (1usize..6000, 1u32..6, 0i64..2000).prop_map(|(len, records, ts)| Op::Append { len, records, ts }),
        4 => (any::<usize>(), any::<u32>(), 1usize..20_000)
            .prop_map(|(pick, within, bytes_max)| Op::Read { pick, within, bytes_max }),
        1 => (1i64..30_000).prop_map(|ms| Op::Advance { ms }),
        1 => Just(Op::Retention),
        1 => (any::<usize>(), any::<u32>()).prop_map(|(pick, within)| Op::Truncate { pick, within }),
        1 => Just(Op::Reopen),
        1 => Just(Op::Sync),
        1 => (-10i64..2100).prop_map(|ts| Op::FindTimestamp { ts }),
    ]
}

#[derive(Clone, Debug)]
struct ModelBatch {
    base: u64,
    records: u32,
    payload: Bytes,
    max_ts: i64,
}

fn config(durability: Durability) -> LogConfig {
    LogConfig {
        segment_age_ms_max: 20_000,
        retention_age_ms_max: Some(60_000),
        retention_bytes_max: Some(160 << 10),
        ..small_config(durability)
    }
}

async fn open_log(dir: &std::path::Path, clock: &ManualClock, durability: Durability) -> Log {
    let clock: Rc<dyn Clock> = Rc::new(clock.clone());
    Log::open(dir, config(durability), clock).await.unwrap()
}

async fn check_all(log: &Log, model: &[ModelBatch]) {
    let all = read_all(log).await;
    assert_eq!(all.len(), model.len());
    for (b, m) in all.iter().zip(model) {
        assert_eq!((b.base_offset, b.record_count, &b.payload), (m.base, m.records, &m.payload));
    }
    assert_eq!(log.log_start_offset(), model.first().map_or(log.log_end_offset(), |m| m.base));
}

async fn apply(ops: Vec<Op>, durability: Durability) {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    let mut log = open_log(dir.path(), &clock, durability).await;
    let mut model: Vec<ModelBatch> = Vec::new();
    let mut next = 0u64;
    for op in ops {
        match op {
            Op::Append { len, records, ts } => {
                let payload = payload_for(next, len);
                let b = Batch { max_timestamp_ms: ts + 5, ..batch(payload.clone(), records, ts) };
                assert_eq!(log.append(b).await.unwrap(), next);
                model.push(ModelBatch { base: next, records, payload, max_ts: ts + 5 });
                next += records as u64;
            }
            Op::Read { pick, within, bytes_max } if !model.is_empty() => {
                let i = pick % model.len();
                let offset = model[i].base + (within % model[i].records) as u64;
                let got = log.read(offset, bytes_max).await.unwrap();
                assert!(!got.is_empty());
                let mut bytes = 0;
                for (k, b) in got.iter().enumerate() {
                    let m = &model[i + k];
                    assert_eq!((b.base_offset, &b.payload), (m.base, &m.payload));
                    bytes += b.payload.len();
                }
                assert!(got.len() == 1 || bytes <= bytes_max, "{bytes} > {bytes_max}");
            }
            Op::Read { .. } => {}
            Op::Advance { ms } => clock.advance_ms(ms),
            Op::Retention => {
                let before = log.log_start_offset();
                let report = log.enforce_retention().await.unwrap();
                let start = log.log_start_offset();
                assert!(start >= before);
                model.retain(|m| m.base >= start);
                if let Some(first) = model.first() {
                    assert_eq!(first.base, start, "retention cuts at a batch boundary");
                }
                let stats = log.stats();
                assert!(stats.segments == 1 || stats.size_bytes <= 160 << 10, "{stats:?} {report:?}");
            }
            Op::Truncate { pick, within } if !model.is_empty() => {
                let i = pick % model.len();
                let offset = model[i].base + (within % model[i].records) as u64;
                let end = log.truncate(offset).await.unwrap();
                assert_eq!(end, model[i].base);
                model.truncate(i);
                next = end;
            }
            Op::Truncate { .. } => {}
            Op::Reopen => {
                log.close().await.unwrap();
                log = open_log(dir.path(), &clock, durability).await;
                assert_eq!(log.log_end_offset(), next);
                check_all(&log, &model).await;
            }
            Op::Sync => {
                log.sync().await.unwrap();
                assert_eq!(log.durable_end_offset(), next);
            }
            Op::FindTimestamp { ts } => {
                let expected = model.iter().find(|m| m.max_ts >= ts).map(|m| m.base);
                assert_eq!(log.offset_for_timestamp(ts).await.unwrap(), expected, "ts {ts}");
            }
        }
        assert_eq!(log.log_end_offset(), next);
    }
    check_all(&log, &model).await;
    log.verify().await.unwrap();
    // Background index writes finish before the directory is removed with the test case.
    log.close().await.unwrap();
}

fn cases() -> u32 {
    if std::env::var_os("RILL_SLOW").is_some() { 300 } else { 24 }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn log_agrees_with_model(ops in proptest::collection::vec(op(), 1..120), policy in 0u8..3) {
        let durability = [Durability::Always, Durability::IntervalMs(3), Durability::Never][policy as usize];
        run(move || apply(ops, durability));
    }
}
