//! The client's address: the peer's, or what a trusted proxy says it is.

use std::net::IpAddr;

use axum::http::HeaderMap;
use ipnet::IpNet;

/// Proxies (Traefik in front of menshen) whose forwarding headers are
/// believed. Nobody else's are.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses a comma-separated list of CIDRs or plain addresses.
    pub fn parse(list: &str) -> Result<TrustedProxies, String> {
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("{s:?} is not an address or CIDR"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(TrustedProxies)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// IPv4-mapped IPv6 addresses as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// The network an address is counted in where a network, not a host, is
/// one party: IPv4 by /16, IPv6 by /48 (what one site is usually given),
/// IPv4-mapped IPv6 addresses as IPv4. Bridges are shared out and limited
/// by it (see `select::ring`), so that one vantage point does not see more
/// by changing its address within its network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Network(u128);

impl Network {
    pub fn of(ip: IpAddr) -> Network {
        match canonical(ip) {
            IpAddr::V4(v4) => Network((1 << 64) | u128::from(u32::from(v4) & 0xffff_0000)),
            // The low 80 bits are zero for every /48, so the 2 tells them
            // from IPv4 networks (bit 64).
            IpAddr::V6(v6) => Network((u128::from(v6) & !((1u128 << 80) - 1)) | 2),
        }
    }

    /// A number naming the network: equal for addresses of one network,
    /// different for others, never 0.
    pub fn key(self) -> u128 {
        self.0
    }
}

/// The client's address. When the peer is a trusted proxy: the right-most
/// address of `X-Forwarded-For` that is not itself a trusted proxy (the
/// left-most if all are), else `X-Real-IP`; otherwise the peer.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &TrustedProxies) -> IpAddr {
    let peer = canonical(peer);
    if !trusted.contains(peer) {
        return peer;
    }
    // From the right, without collecting: this runs for every request.
    let mut leftmost = None;
    for value in headers.get_all("x-forwarded-for").iter().rev() {
        let Ok(value) = value.to_str() else { continue };
        for part in value.rsplit(',') {
            let Ok(ip) = part.trim().parse::<IpAddr>() else {
                continue;
            };
            let ip = canonical(ip);
            if !trusted.contains(ip) {
                return ip;
            }
            leftmost = Some(ip);
        }
    }
    if let Some(ip) = leftmost {
        return ip;
    }
    headers
        .get("x-real-ip")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<IpAddr>().ok())
        .map(canonical)
        .unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn headers_count_only_from_trusted_peers() {
        let trusted = TrustedProxies::parse("10.0.0.0/8, 192.0.2.1").unwrap();
        let h = headers(&[("x-forwarded-for", "203.0.113.9")]);
        assert_eq!(
            client_ip(ip("198.51.100.1"), &h, &trusted),
            ip("198.51.100.1")
        );
        assert_eq!(client_ip(ip("10.1.2.3"), &h, &trusted), ip("203.0.113.9"));
        assert_eq!(client_ip(ip("192.0.2.1"), &h, &trusted), ip("203.0.113.9"));
        assert_eq!(
            client_ip(ip("::ffff:10.1.2.3"), &h, &trusted),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn the_right_most_untrusted_address_wins() {
        let trusted = TrustedProxies::parse("10.0.0.0/8").unwrap();
        // a client may prepend anything; only what our proxies appended counts
        let h = headers(&[("x-forwarded-for", "1.1.1.1, 203.0.113.9, 10.0.0.2")]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted), ip("203.0.113.9"));
        let h = headers(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "203.0.113.9"),
        ]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted), ip("203.0.113.9"));
        let h = headers(&[("x-forwarded-for", "10.0.0.7, 10.0.0.2")]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted), ip("10.0.0.7"));
    }

    #[test]
    fn x_real_ip_is_the_fallback() {
        let trusted = TrustedProxies::parse("127.0.0.1").unwrap();
        let h = headers(&[("x-real-ip", "203.0.113.5")]);
        assert_eq!(client_ip(ip("127.0.0.1"), &h, &trusted), ip("203.0.113.5"));
        let h = headers(&[("x-real-ip", "garbage")]);
        assert_eq!(client_ip(ip("127.0.0.1"), &h, &trusted), ip("127.0.0.1"));
    }

    #[test]
    fn networks_are_ipv4_16_and_ipv6_48() {
        let net = |s: &str| Network::of(ip(s));
        assert_eq!(net("198.51.100.1"), net("198.51.7.200"));
        assert_ne!(net("198.51.100.1"), net("198.52.100.1"));
        assert_eq!(net("::ffff:198.51.0.1"), net("198.51.100.1"));
        assert_eq!(net("2001:db8:1::1"), net("2001:db8:1:ffff::9"));
        assert_ne!(net("2001:db8:1::1"), net("2001:db8:2::1"));
        // IPv4 networks and IPv6 ones whose bits look alike stay apart.
        assert_ne!(net("0.0.0.0"), net("::"));
        assert_ne!(net("198.51.0.0").key(), 0);
        assert_ne!(net("::").key(), 0);
    }

    #[test]
    fn bad_lists_are_refused() {
        assert!(TrustedProxies::parse("10.0.0.0/33").is_err());
        assert!(TrustedProxies::parse("proxy.example").is_err());
        assert!(TrustedProxies::parse("").unwrap().is_empty());
    }
}
