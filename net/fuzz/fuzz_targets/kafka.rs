//! Fuzz target: arbitrary bytes into a Kafka connection (length prefix, request header, the
//! request codecs of every served API), split at fuzzer-chosen points, then every produce's
//! records through the RecordBatch v2 parser. Nothing may panic or abort (an absurd array count
//! must not allocate); every request taken is answered or completed, in order.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use rill_net::kafka::{KafkaConnection, KafkaLimits, KafkaRequest};
use rill_net::record_batch;

fuzz_target!(|input: &[u8]| {
    let Some((&split, bytes)) = input.split_first() else { return };
    let limits = KafkaLimits { frame_bytes_max: 1 << 16, max_inflight: 4 };
    let mut conn = KafkaConnection::new(limits);
    let step = (split as usize).max(1);
    for chunk in bytes.chunks(step) {
        conn.receive(chunk);
        let mut taken = Vec::new();
        loop {
            match conn.poll_request() {
                Ok(Some(incoming)) => {
                    let mut silent = false;
                    if let KafkaRequest::Produce(produce) = &incoming.request {
                        silent = produce.acks == 0;
                        for topic in &produce.topic_data {
                            for part in &topic.partition_data {
                                if let Some(records) = &part.records {
                                    let _ = record_batch::split_batches(records);
                                }
                            }
                        }
                    }
                    taken.push((incoming.slot, silent));
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
        // Answer newest first: the connection must still send them oldest first.
        for (slot, silent) in taken.into_iter().rev() {
            if silent {
                conn.complete_silently(slot);
            } else {
                conn.respond(slot, Bytes::from(slot.to_be_bytes().to_vec()));
            }
        }
        let mut last = None;
        while let Some(frame) = conn.poll_transmit() {
            let slot = u64::from_be_bytes(frame[..8].try_into().expect("8 bytes"));
            assert!(last.is_none_or(|l| l < slot), "responses leave in request order");
            last = Some(slot);
        }
    }
});
