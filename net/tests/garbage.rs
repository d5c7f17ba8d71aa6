//! Hostile input: arbitrary bytes fed to the frame decoder and the message decoders never panic,
//! and well-formed messages survive any split of the byte stream.

use bytes::Bytes;
use proptest::prelude::*;
use rill_net::frame::{FrameDecoder, encode_frame};
use rill_net::message::{self, Acks, FetchPart, ProducePart, RequestBody, TopicSettings};
use rill_net::record_batch;

fn request() -> impl Strategy<Value = RequestBody> {
    let name = "[a-z._-]{1,20}";
    prop_oneof![
        (name, 1u32..100).prop_map(|(name, partitions)| RequestBody::CreateTopic {
            name,
            partitions,
            replication_factor: 1,
            settings: TopicSettings { retention_ms: Some(5), ..TopicSettings::default() },
        }),
        name.prop_map(|name| RequestBody::DeleteTopic { name }),
        Just(RequestBody::ListTopics),
        (name, any::<u32>(), 0u32..1000, 0u32..1000).prop_map(
            |(topic, partition, records_at, records_len)| {
                RequestBody::Produce {
                    acks: Acks::Durable,
                    timeout_ms: 100,
                    parts: vec![ProducePart { topic, partition, records_at, records_len }],
                }
            }
        ),
        (name, any::<u32>(), any::<u64>()).prop_map(|(topic, partition, offset)| RequestBody::Fetch {
            max_wait_ms: 10,
            min_bytes: 1,
            max_bytes: 1 << 20,
            parts: vec![FetchPart { topic, partition, offset, max_bytes: 1000 }],
        }),
    ]
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096), kind in any::<u16>()) {
        let mut decoder = FrameDecoder::new(1 << 16);
        decoder.feed(&bytes);
        let _ = decoder.next_frame();
        let payload = Bytes::from(bytes.clone());
        let _ = message::decode_request(kind, &payload);
        let _ = message::decode_response(&payload);
        let _ = record_batch::split_batches(&payload);
        let _ = record_batch::decode_records(&payload);
    }

    #[test]
    fn requests_survive_any_split(body in request(), data in proptest::collection::vec(any::<u8>(), 1000), step in 1usize..200) {
        let data = Bytes::from(data);
        let payload: Bytes = message::encode_payload(&body, std::slice::from_ref(&data)).concat().into();
        let frame = encode_frame(body.kind() as u16, 42, &payload);
        let mut decoder = FrameDecoder::new(1 << 20);
        let mut got = None;
        for chunk in frame.chunks(step) {
            decoder.feed(chunk);
            if let Some(f) = decoder.next_frame().unwrap() {
                got = Some(f);
            }
        }
        let f = got.expect("the frame completes");
        prop_assert_eq!(f.request_id, 42);
        match message::decode_request(f.kind, &f.payload) {
            Ok((decoded, rest)) => {
                prop_assert_eq!(decoded, body);
                prop_assert_eq!(rest, data);
            }
            // A produce whose record range lies outside the data is refused, never misread.
            Err(message::MessageError::BadRange) => {
                let is_produce = matches!(body, RequestBody::Produce { .. });
                prop_assert!(is_produce, "only produce carries record ranges");
            }
            Err(e) => prop_assert!(false, "{e}"),
        }
    }
}
