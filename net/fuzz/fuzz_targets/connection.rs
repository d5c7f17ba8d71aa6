//! Fuzz target: arbitrary bytes into a server connection (frame decoder, envelope validation,
//! record-range checks), split at fuzzer-chosen points, then every decoded produce's record
//! ranges through the RecordBatch v2 parser. Nothing may panic; every request that decodes is
//! answered.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use rill_net::connection::{ConnectionLimits, Incoming, ServerConnection};
use rill_net::message::{self, RequestBody, ResponseBody};
use rill_net::record_batch;

fuzz_target!(|input: &[u8]| {
    let Some((&split, bytes)) = input.split_first() else { return };
    let limits = ConnectionLimits { frame_bytes_max: 1 << 16, max_inflight: 4 };
    let mut conn = ServerConnection::new(limits);
    let step = (split as usize).max(1);
    for chunk in bytes.chunks(step) {
        conn.receive(chunk);
        loop {
            match conn.poll_request() {
                Ok(Some(Incoming::Request { request_id, body, data })) => {
                    if let RequestBody::Produce { parts, .. } = &body {
                        for p in parts {
                            let records = message::range(&data, p.records_at, p.records_len).expect("validated");
                            let _ = record_batch::split_batches(&records);
                        }
                    }
                    let reply = ResponseBody::Topics { names: vec![] };
                    conn.respond(request_id, body.kind(), &reply, &[Bytes::new()]);
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
        while conn.poll_transmit().is_some() {}
    }
});
