//! A small blocking native-protocol client for the command-line tools (one request at a time;
//! the load generator has its own pipelined client).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use rill_net::frame::{FrameDecoder, encode_header};
use rill_net::message::{self, ErrorCode, RESPONSE_BIT, RequestBody, ResponseBody};

/// A connection to a broker's native port.
pub struct Client {
    stream: TcpStream,
    decoder: FrameDecoder,
    next_id: u64,
    addr: String,
}

impl Client {
    /// Connects to `addr` (host:port).
    pub fn connect(addr: &str) -> anyhow::Result<Client> {
        let stream = TcpStream::connect(addr).with_context(|| format!("connecting to broker at {addr}"))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        Ok(Client { stream, decoder: FrameDecoder::new(256 << 20), next_id: 1, addr: addr.to_string() })
    }

    /// Sends a request that gets no response (produce with acks none).
    pub fn send_only(&mut self, body: &RequestBody, data: &[Bytes]) -> anyhow::Result<u64> {
        let id = self.next_id;
        self.next_id += 1;
        let chunks = message::encode_payload(body, data);
        let slices: Vec<&[u8]> = chunks.iter().map(|c| &c[..]).collect();
        let header = encode_header(body.kind() as u16, id, &slices);
        self.stream.write_all(&header)?;
        for chunk in &chunks {
            self.stream.write_all(chunk)?;
        }
        Ok(id)
    }

    /// Sends a request with its data section and waits for the response.
    pub fn call(&mut self, body: &RequestBody, data: &[Bytes]) -> anyhow::Result<(ResponseBody, Bytes)> {
        let id = self.send_only(body, data)?;
        let mut buf = vec![0u8; 64 << 10];
        loop {
            if let Some(frame) = self.decoder.next_frame()? {
                if frame.request_id != id {
                    bail!(
                        "broker {} answered request {} while {id} was expected",
                        self.addr,
                        frame.request_id
                    );
                }
                if frame.kind & RESPONSE_BIT == 0 {
                    bail!("broker sent a non-response frame");
                }
                return Ok(message::decode_response(&frame.payload)?);
            }
            let n = self.stream.read(&mut buf).context("reading the broker's response")?;
            if n == 0 {
                bail!("broker {} closed the connection", self.addr);
            }
            self.decoder.feed(&buf[..n]);
        }
    }

    /// Sends a request whose answer is a plain status; fails on an error status.
    pub fn call_status(&mut self, body: &RequestBody) -> anyhow::Result<()> {
        match self.call(body, &[])?.0 {
            ResponseBody::Status { error: ErrorCode::None, .. } => Ok(()),
            ResponseBody::Status { error, message } => bail!("{error:?}: {message}"),
            other => bail!("unexpected response {other:?}"),
        }
    }
}
