//! The relay's HTTP/2 connection to one gateway, over TLS to the proxy's
//! attested certificate; dialed when needed, one dial at a time.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use kokon_link::{LinkClient, LinkLimits};

/// Longest dial: TCP, TLS and HTTP/2.
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) struct Upstream {
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    client: tokio::sync::Mutex<Option<LinkClient>>,
}

impl Upstream {
    pub(crate) fn new(addr: SocketAddr, tls: Arc<rustls::ClientConfig>) -> Self {
        Self {
            addr,
            tls,
            client: tokio::sync::Mutex::new(None),
        }
    }

    pub(crate) async fn send(
        &self,
        req: Request<Full<Bytes>>,
    ) -> Result<http::Response<hyper::body::Incoming>, String> {
        let client = self.client().await?;
        client.forward(req).await.map_err(|e| e.message)
    }

    async fn client(&self) -> Result<LinkClient, String> {
        let mut current = self.client.lock().await;
        if let Some(c) = current.as_ref().filter(|c| c.is_open()) {
            return Ok(c.clone());
        }
        let c = tokio::time::timeout(DIAL_TIMEOUT, self.dial())
            .await
            .map_err(|_| format!("no connection to {} within {DIAL_TIMEOUT:?}", self.addr))??;
        *current = Some(c.clone());
        Ok(c)
    }

    async fn dial(&self) -> Result<LinkClient, String> {
        let tcp = tokio::net::TcpStream::connect(self.addr)
            .await
            .map_err(|e| format!("connect {}: {e}", self.addr))?;
        let _ = tcp.set_nodelay(true);
        let name = rustls::pki_types::ServerName::try_from("kokon.peer").expect("static name");
        let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS with the gateway {}: {e}", self.addr))?;
        let (client, conn) = kokon_link::dial(tls, LinkLimits::CLIENT)
            .await
            .map_err(|e| format!("HTTP/2 with the gateway {}: {e}", self.addr))?;
        tokio::spawn(conn);
        tracing::info!(gateway = %self.addr, "connected to gateway");
        Ok(client)
    }
}
