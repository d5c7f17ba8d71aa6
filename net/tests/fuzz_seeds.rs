//! The fuzz target's seed corpus (`net/fuzz/corpus/connection/`) is generated here from real
//! messages, and this test keeps the committed seeds identical to what the current encoders
//! produce. `RILL_WRITE_FUZZ_SEEDS=1` rewrites them after a format change.

use std::path::PathBuf;

use bytes::Bytes;
use rill_net::frame::encode_frame;
use rill_net::message::{self, Acks, FetchPart, OffsetSpec, ProducePart, RequestBody, TopicSettings};
use rill_net::record_batch::{BatchBuilder, Record};

fn frame(id: u64, body: &RequestBody, data: &[Bytes]) -> Vec<u8> {
    let payload: Bytes = message::encode_payload(body, data).concat().into();
    encode_frame(body.kind() as u16, id, &payload).to_vec()
}

fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut builder = BatchBuilder::new();
    for i in 0..3 {
        builder.push(&Record {
            timestamp_ms: 1_700_000_000_000 + i,
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from_static(b"value")),
            headers: vec![("h".into(), None)],
        });
    }
    let batch = builder.build();
    let produce = RequestBody::Produce {
        acks: Acks::Durable,
        timeout_ms: 1000,
        parts: vec![ProducePart {
            topic: "events".into(),
            partition: 0,
            records_at: 0,
            records_len: batch.len() as u32,
        }],
    };
    let create = RequestBody::CreateTopic {
        name: "events".into(),
        partitions: 8,
        settings: TopicSettings { durability: Some("always".into()), ..TopicSettings::default() },
    };
    let fetch = RequestBody::Fetch {
        max_wait_ms: 500,
        min_bytes: 1,
        max_bytes: 1 << 20,
        parts: vec![FetchPart { topic: "events".into(), partition: 0, offset: 0, max_bytes: 1 << 20 }],
    };
    let offsets = RequestBody::ListOffsets {
        parts: vec![
            ("events".into(), 0, OffsetSpec::Earliest),
            ("events".into(), 1, OffsetSpec::Timestamp(5)),
        ],
    };
    let with_step = |step: u8, bytes: Vec<u8>| [vec![step], bytes].concat();
    let mut pipelined = frame(1, &create, &[]);
    pipelined.extend(frame(2, &produce, std::slice::from_ref(&batch)));
    pipelined.extend(frame(3, &fetch, &[]));
    vec![
        ("create", with_step(255, frame(1, &create, &[]))),
        ("produce", with_step(255, frame(2, &produce, std::slice::from_ref(&batch)))),
        ("fetch", with_step(7, frame(3, &fetch, &[]))),
        ("list-offsets", with_step(255, frame(4, &offsets, &[]))),
        ("list-topics", with_step(1, frame(5, &RequestBody::ListTopics, &[]))),
        ("pipelined", with_step(33, pipelined)),
    ]
}

#[test]
fn committed_seeds_match_the_encoders() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/connection");
    let write = std::env::var_os("RILL_WRITE_FUZZ_SEEDS").is_some();
    if write {
        std::fs::create_dir_all(&dir).unwrap();
    }
    for (name, bytes) in seeds() {
        let path = dir.join(format!("seed-{name}"));
        if write {
            std::fs::write(&path, &bytes).unwrap();
        }
        let committed = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(committed, bytes, "{} is stale; rerun with RILL_WRITE_FUZZ_SEEDS=1", path.display());
    }
}
