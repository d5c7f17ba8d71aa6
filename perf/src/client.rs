//! The load generator's connection: the native protocol or the Kafka protocol behind one
//! interface of native envelopes, so every workload runs unchanged over either.

use std::rc::Rc;

use bytes::Bytes;
use rill_net::message::{RequestBody, ResponseBody};

use crate::kafka_client::KafkaClient;
use crate::native_client::NativeClient;

/// Which wire protocol a bench speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// Rill's rkyv-framed protocol.
    Native,
    /// The Kafka wire protocol (any Kafka-compatible broker).
    Kafka,
}

impl std::str::FromStr for Protocol {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Protocol> {
        match s {
            "native" => Ok(Protocol::Native),
            "kafka" => Ok(Protocol::Kafka),
            other => anyhow::bail!("--protocol {other:?}: expected native or kafka"),
        }
    }
}

/// One connection.
pub enum Client {
    /// Native protocol.
    Native(Rc<NativeClient>),
    /// Kafka protocol.
    Kafka(Rc<KafkaClient>),
}

impl Client {
    /// Connects with `protocol`.
    pub async fn connect(protocol: Protocol, addr: &str) -> anyhow::Result<Rc<Client>> {
        Ok(Rc::new(match protocol {
            Protocol::Native => Client::Native(NativeClient::connect(addr).await?),
            Protocol::Kafka => Client::Kafka(KafkaClient::connect(addr).await?),
        }))
    }

    /// Sends a request and waits for its response.
    pub async fn call(&self, body: &RequestBody, data: &[Bytes]) -> anyhow::Result<(ResponseBody, Bytes)> {
        match self {
            Client::Native(c) => c.call(body, data).await,
            Client::Kafka(c) => c.call(body, data).await,
        }
    }

    /// Sends a request that gets no response (produce with acks none).
    pub async fn send_only(&self, body: &RequestBody, data: &[Bytes]) -> anyhow::Result<()> {
        match self {
            Client::Native(c) => c.send_only(body, data).await,
            Client::Kafka(c) => c.send_only(body, data).await,
        }
    }
}
