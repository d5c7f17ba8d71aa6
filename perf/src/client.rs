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

/// A change to a produce's records, applied to them where they lie in the encoded request.
pub type Patch = Box<dyn FnOnce(&mut [u8])>;

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
        self.call_patched(body, data, None).await
    }

    /// [`Client::call`] of a produce whose one data piece is changed by `patch` where it lies in
    /// the encoded frame, so a client whose codec copies the records anyway (Kafka) copies them
    /// once. The native client sends data pieces without copying and takes no patch.
    pub async fn call_patched(
        &self,
        body: &RequestBody,
        data: &[Bytes],
        patch: Option<Patch>,
    ) -> anyhow::Result<(ResponseBody, Bytes)> {
        match self {
            Client::Native(c) => {
                anyhow::ensure!(patch.is_none(), "the native client sends data pieces as they are");
                c.call(body, data).await
            }
            Client::Kafka(c) => c.call(body, data, patch).await,
        }
    }

    /// Sends a request that gets no response (produce with acks none), with an optional
    /// patch as in [`Client::call_patched`].
    pub async fn send_only_patched(
        &self,
        body: &RequestBody,
        data: &[Bytes],
        patch: Option<Patch>,
    ) -> anyhow::Result<()> {
        match self {
            Client::Native(c) => {
                anyhow::ensure!(patch.is_none(), "the native client sends data pieces as they are");
                c.send_only(body, data).await
            }
            Client::Kafka(c) => c.send_only(body, data, patch).await,
        }
    }
}
