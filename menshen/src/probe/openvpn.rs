//! The start of an OpenVPN handshake, as a prober sees it: a client's hard
//! reset (`P_CONTROL_HARD_RESET_CLIENT_V2`) and the server's answer
//! (`P_CONTROL_HARD_RESET_SERVER_V2`), which acknowledges it and names the
//! client's session. Only an OpenVPN server that would go on to talk TLS
//! answers so; nothing beyond it is sent, and the server forgets the
//! half-open session after its handshake window.
//!
//! Without `tls-auth`/`tls-crypt` (LEAP clients get no such key from the
//! provider API, so LEAP gateways run without one) a control packet is:
//! opcode and key id (one byte: opcode << 3 | key id), the sender's session
//! id (8 bytes), the number of acknowledged packet ids (1 byte), those ids
//! (4 bytes each) and, when there are any, the session id they belong to (8
//! bytes), then the packet's own id (4 bytes) and its payload. Over TCP every
//! packet is preceded by its length (2 bytes, big-endian).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UdpSocket;
use tokio::time::{Instant, timeout_at};

const P_CONTROL_HARD_RESET_CLIENT_V2: u8 = 7;
const P_CONTROL_HARD_RESET_SERVER_V2: u8 = 8;
const P_ACK_V1: u8 = 5;

/// How often the hard reset is sent again over UDP while no answer came.
const UDP_RESEND: Duration = Duration::from_millis(1000);

/// A client's hard reset for `session`: key id 0, nothing acknowledged,
/// packet id 0, no payload.
pub fn hard_reset(session: [u8; 8]) -> [u8; 14] {
    let mut packet = [0u8; 14];
    packet[0] = P_CONTROL_HARD_RESET_CLIENT_V2 << 3;
    packet[1..9].copy_from_slice(&session);
    // packet[9]: no acknowledgements; packet[10..14]: packet id 0.
    packet
}

/// What a packet the server sent says about the hard reset of `session`.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    /// The server's hard reset, for this session.
    Accepted,
    /// Something that may come before it (a bare acknowledgement).
    NotYet,
}

/// Reads `packet`, which came from the server the hard reset of `session`
/// went to.
pub fn read_reply(packet: &[u8], session: [u8; 8]) -> Result<Reply, String> {
    let Some(&first) = packet.first() else {
        return Err("an empty packet came back".into());
    };
    let opcode = first >> 3;
    if opcode != P_CONTROL_HARD_RESET_SERVER_V2 && opcode != P_ACK_V1 {
        return Err(format!(
            "answered with something that is not an OpenVPN server's hard reset (opcode {opcode})"
        ));
    }
    let acks = usize::from(*packet.get(9).ok_or("the answer is too short")?);
    if acks > 0 {
        let at = 10 + 4 * acks;
        let remote = packet.get(at..at + 8).ok_or("the answer is too short")?;
        if remote != session {
            return Err("the answer is for another session".into());
        }
    }
    match opcode {
        P_CONTROL_HARD_RESET_SERVER_V2 => Ok(Reply::Accepted),
        _ => Ok(Reply::NotYet),
    }
}

fn no_answer(timeout: Duration) -> String {
    format!(
        "no OpenVPN answer within {}",
        humantime::format_duration(timeout)
    )
}

/// Sends a hard reset to the OpenVPN server at UDP `addr` and waits up to
/// `timeout` for its answer, sending again every second meanwhile (a lost
/// datagram is not a dead gateway).
pub async fn check_udp(addr: SocketAddr, timeout: Duration) -> Result<String, String> {
    let deadline = Instant::now() + timeout;
    let local: SocketAddr = if addr.is_ipv4() {
        "0.0.0.0:0".parse().expect("an address")
    } else {
        "[::]:0".parse().expect("an address")
    };
    let socket = UdpSocket::bind(local)
        .await
        .map_err(|e| format!("no UDP socket: {e}"))?;
    // Connected, so that only the server's datagrams arrive and an ICMP
    // "port unreachable" ends the wait at once.
    socket
        .connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let session: [u8; 8] = rand::random();
    let packet = hard_reset(session);
    let mut buf = [0u8; 2048];
    loop {
        socket
            .send(&packet)
            .await
            .map_err(|e| format!("send: {e}"))?;
        let resend = (Instant::now() + UDP_RESEND).min(deadline);
        loop {
            match timeout_at(resend, socket.recv(&mut buf)).await {
                Ok(Ok(n)) => {
                    if read_reply(&buf[..n], session)? == Reply::Accepted {
                        return Ok("OpenVPN answered a hard reset over UDP".into());
                    }
                }
                Ok(Err(e)) => return Err(format!("no OpenVPN answer: {e}")),
                Err(_) => break,
            }
        }
        if Instant::now() >= deadline {
            return Err(no_answer(timeout));
        }
    }
}

/// Connects to the OpenVPN server at TCP `addr`, sends a hard reset and
/// waits for its answer, all within `timeout`.
pub async fn check_tcp(addr: SocketAddr, timeout: Duration) -> Result<String, String> {
    let deadline = Instant::now() + timeout;
    let mut stream = super::connect(addr, deadline, timeout).await?;
    let session: [u8; 8] = rand::random();
    let packet = hard_reset(session);
    let mut framed = Vec::with_capacity(2 + packet.len());
    framed.extend_from_slice(&(packet.len() as u16).to_be_bytes());
    framed.extend_from_slice(&packet);
    let exchange = async {
        stream
            .write_all(&framed)
            .await
            .map_err(|e| format!("send: {e}"))?;
        loop {
            let mut len = [0u8; 2];
            stream
                .read_exact(&mut len)
                .await
                .map_err(|e| format!("connected, but no OpenVPN answer: {e}"))?;
            let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
            stream
                .read_exact(&mut reply)
                .await
                .map_err(|e| format!("connected, but the answer broke off: {e}"))?;
            if read_reply(&reply, session)? == Reply::Accepted {
                return Ok("OpenVPN answered a hard reset over TCP".to_owned());
            }
        }
    };
    match timeout_at(deadline, exchange).await {
        Ok(result) => result,
        Err(_) => Err(format!("connected, but {}", no_answer(timeout))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SESSION: [u8; 8] = [1, 2, 3, 4, 5, 6, 7, 8];

    /// A server's hard reset as OpenVPN 2.6 sends it: its own session,
    /// one acknowledgement (packet id 0) of `remote`'s reset, packet id 0.
    fn server_reset(remote: [u8; 8]) -> Vec<u8> {
        let mut p = vec![P_CONTROL_HARD_RESET_SERVER_V2 << 3];
        p.extend_from_slice(&[9; 8]);
        p.push(1);
        p.extend_from_slice(&[0; 4]);
        p.extend_from_slice(&remote);
        p.extend_from_slice(&[0; 4]);
        p
    }

    #[test]
    fn the_hard_reset_is_laid_out_as_openvpn_reads_it() {
        let p = hard_reset(SESSION);
        assert_eq!(p[0], 0x38, "opcode 7, key id 0");
        assert_eq!(&p[1..9], &SESSION);
        assert_eq!(&p[9..], &[0, 0, 0, 0, 0]);
    }

    #[test]
    fn replies_are_told_apart() {
        assert_eq!(
            read_reply(&server_reset(SESSION), SESSION),
            Ok(Reply::Accepted)
        );
        let other = read_reply(&server_reset([7; 8]), SESSION).unwrap_err();
        assert!(other.contains("another session"), "{other}");
        let mut ack = server_reset(SESSION);
        ack[0] = P_ACK_V1 << 3;
        assert_eq!(read_reply(&ack, SESSION), Ok(Reply::NotYet));
        let http = read_reply(b"HTTP/1.1 400 Bad Request\r\n", SESSION).unwrap_err();
        assert!(http.contains("not an OpenVPN"), "{http}");
        assert!(read_reply(&[0x40, 1, 2], SESSION).is_err());
        assert!(read_reply(&[], SESSION).is_err());
    }
}
