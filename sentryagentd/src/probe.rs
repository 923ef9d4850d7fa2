//! `--healthcheck`: asks a running server whether it is ready, so that a
//! container image needs no HTTP client for its `HEALTHCHECK`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use axum::body::Body;
use hyper_util::rt::TokioIo;

/// The longest a probe takes.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Where to reach a server listening on `listen`: the loopback address of
/// the same family when it listens on every interface.
pub(crate) fn target(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// `GET /health/ready` on the server at `listen`; prints one line (on
/// stdout when ready, on stderr otherwise) and returns whether it answered
/// 200 within [`TIMEOUT`].
pub(crate) async fn ready(listen: SocketAddr) -> bool {
    let addr = target(listen);
    match tokio::time::timeout(TIMEOUT, status(addr)).await {
        Ok(Ok(200)) => {
            println!("ready: http://{addr}/health/ready answered 200");
            true
        }
        Ok(Ok(code)) => {
            eprintln!("not ready: http://{addr}/health/ready answered {code}");
            false
        }
        Ok(Err(e)) => {
            eprintln!("not ready: http://{addr}/health/ready: {e}");
            false
        }
        Err(_) => {
            eprintln!(
                "not ready: http://{addr}/health/ready did not answer within {} s",
                TIMEOUT.as_secs()
            );
            false
        }
    }
}

async fn status(addr: SocketAddr) -> Result<u16, Box<dyn std::error::Error + Send + Sync>> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let conn = tokio::spawn(conn);
    let req = hyper::Request::get("/health/ready")
        .header(hyper::header::HOST, addr.to_string())
        .header(hyper::header::CONNECTION, "close")
        .body(Body::empty())?;
    let res = sender.send_request(req).await?;
    conn.abort();
    Ok(res.status().as_u16())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_interface_is_probed_on_loopback() {
        let t = |s: &str| target(s.parse().unwrap()).to_string();
        assert_eq!(t("0.0.0.0:8080"), "127.0.0.1:8080");
        assert_eq!(t("[::]:8080"), "[::1]:8080");
        assert_eq!(t("10.1.2.3:9000"), "10.1.2.3:9000");
        assert_eq!(t("127.0.0.1:1"), "127.0.0.1:1");
    }
}
