//! Port checks.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;

/// Whether something accepts TCP connections at `addr` within `timeout`.
/// The connection is closed at once.
pub async fn tcp_accepts(addr: SocketAddr, timeout: Duration) -> Result<(), String> {
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(_stream)) => Ok(()),
        Ok(Err(e)) => Err(format!("connect: {e}")),
        Err(_) => Err(format!(
            "connect: no answer within {}",
            humantime::format_duration(timeout)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn open_and_closed_ports() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        assert_eq!(tcp_accepts(addr, Duration::from_secs(1)).await, Ok(()));
        drop(listener);
        let e = tcp_accepts(addr, Duration::from_secs(1)).await.unwrap_err();
        assert!(e.contains("refused"), "{e}");
    }
}
