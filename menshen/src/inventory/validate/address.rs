//! Why an address is not one clients may be sent to.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Why `ip` is not a public unicast IPv4 address, if it is not.
pub fn non_public_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(if ip.is_unspecified() {
        "is unspecified"
    } else if a == 0 {
        "is in 0.0.0.0/8 (this network)"
    } else if ip.is_loopback() {
        "is a loopback address"
    } else if ip.is_private() {
        "is a private address (RFC 1918)"
    } else if ip.is_link_local() {
        "is a link-local address"
    } else if a == 100 && (b & 0xc0) == 64 {
        "is a shared (CGNAT) address, 100.64.0.0/10"
    } else if ip.is_documentation() {
        "is a documentation address"
    } else if a == 192 && b == 0 && c == 0 {
        "is in 192.0.0.0/24 (IETF protocol assignments)"
    } else if a == 198 && (b & 0xfe) == 18 {
        "is a benchmarking address, 198.18.0.0/15"
    } else if ip.is_broadcast() {
        "is the broadcast address"
    } else if ip.is_multicast() {
        "is a multicast address"
    } else if a >= 240 {
        "is reserved, 240.0.0.0/4"
    } else {
        return None;
    })
}

/// Why `ip` is not a public unicast IPv6 address, if it is not.
pub fn non_public_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return non_public_v4(v4).map(|_| "is an IPv4-mapped address of a non-public address");
    }
    let s = ip.segments();
    Some(if ip.is_unspecified() {
        "is unspecified"
    } else if ip.is_loopback() {
        "is the loopback address"
    } else if ip.is_multicast() {
        "is a multicast address"
    } else if (s[0] & 0xfe00) == 0xfc00 {
        "is a unique local address, fc00::/7"
    } else if (s[0] & 0xffc0) == 0xfe80 {
        "is a link-local address"
    } else if (s[0] & 0xffc0) == 0xfec0 {
        "is a site-local address"
    } else if s[0] == 0x2001 && s[1] == 0x0db8 || (s[0] & 0xfff0) == 0x3ff0 {
        "is a documentation address"
    } else if (s[0] & 0xe000) != 0x2000 {
        "is outside the global unicast addresses, 2000::/3"
    } else if s[0] == 0x2001 && s[1] < 0x0200 {
        "is in 2001::/23 (IETF protocol assignments)"
    } else {
        return None;
    })
}
