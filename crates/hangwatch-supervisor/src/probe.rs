//! Readiness and liveness probes run from outside a service: TCP connect and HTTP GET.
//! (Provisional version, replaced by the full one.)
#![allow(missing_docs)]

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ProbeError(String);

pub async fn tcp(addr: &str, timeout: Duration) -> Result<(), ProbeError> {
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(err)) => Err(ProbeError(format!("{addr}: {err}"))),
        Err(_) => Err(ProbeError("timed out".into())),
    }
}

pub async fn http(url: &str, timeout: Duration) -> Result<u16, ProbeError> {
    let _ = (url, timeout);
    Err(ProbeError("http probes are not available yet".into()))
}
