//! What the system test checks besides the HTTP answers: the gateway's
//! processes as `/proc` shows them, its binaries' capabilities, its
//! resolver; and the free ports it runs on.

use std::net::{TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use menshen_e2e::podman::{Containers, Observed};
use menshen_e2e::tools::run;

pub(crate) fn free_tcp() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A port free for both TCP and UDP.
pub(crate) fn free_both() -> u16 {
    loop {
        let port = free_tcp();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A DNS query for `name` (type A) over TCP to `addr`; the answer's first
/// IPv4 address.
pub(crate) fn resolve_a(addr: (&str, u16), name: &str) -> Option<std::net::Ipv4Addr> {
    use std::io::{Read, Write};
    let mut query = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.trim_end_matches('.').split('.') {
        query.push(label.len() as u8);
        query.extend_from_slice(label.as_bytes());
    }
    query.extend_from_slice(&[0, 0, 1, 0, 1]);
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut framed = (query.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&query);
    stream.write_all(&framed).ok()?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).ok()?;
    let mut answer = vec![0u8; u16::from_be_bytes(len) as usize];
    stream.read_exact(&mut answer).ok()?;
    let answers = u16::from_be_bytes([answer[6], answer[7]]);
    if answers == 0 {
        return None;
    }
    // The answer's last four bytes: the first (only) A record's address.
    let n = answer.len();
    Some(std::net::Ipv4Addr::new(
        answer[n - 4],
        answer[n - 3],
        answer[n - 2],
        answer[n - 1],
    ))
}

/// The bridge's user, and the agent's (charts/gateway/values.yaml).
pub(crate) const BRIDGE_USER: u32 = 65532;
pub(crate) const NET_BIND_SERVICE: u64 = 1 << 10;
pub(crate) const NET_ADMIN: u64 = 1 << 12;

/// What each of the gateway chart's containers (by the end of its name)
/// must run as: its user, and the one capability it may hold, or none.
pub(crate) const EXPECTED: &[(&str, u32, u64)] = &[
    ("-openvpn", 10001, NET_ADMIN),
    ("-bridge", BRIDGE_USER, NET_BIND_SERVICE),
    ("-kresd", 10002, NET_BIND_SERVICE),
    ("-agent", BRIDGE_USER, 0),
];

/// Fails unless every process in `observed` runs as its container's user
/// (every uid and gid: real, effective, saved, filesystem) and within its
/// capabilities, under a seccomp filter, with `/` read-only.
pub(crate) fn check_processes(observed: &[Observed]) {
    let all = || {
        observed
            .iter()
            .map(Observed::summary)
            .collect::<Vec<_>>()
            .join("\n")
    };
    for &(suffix, _, _) in EXPECTED {
        assert!(
            observed
                .iter()
                .any(|p| p.main && p.container.ends_with(suffix)),
            "no container *{suffix}:\n{}",
            all()
        );
    }
    for p in observed {
        let &(_, user, cap) = EXPECTED
            .iter()
            .find(|(suffix, _, _)| p.container.ends_with(suffix))
            .unwrap_or_else(|| panic!("a container the chart should not start: {p:?}"));
        let at = p.summary();
        assert_eq!(p.uid, [user; 4], "{at}");
        assert_eq!(p.gid, [user; 4], "{at}");
        assert_eq!(p.seccomp, 2, "a seccomp filter: {at}");
        assert!(p.root_read_only, "{at}");
        // The bounding set: nothing in the container can hold more.
        assert_eq!(p.cap_bnd, cap, "{at}");
        if p.main {
            assert_eq!((p.cap_eff, p.cap_prm), (cap, cap), "{at}");
            if cap == 0 {
                assert!(p.no_new_privs, "{at}");
            } else {
                // No ambient capability: the kernel clears it when it runs a
                // binary with file capabilities, and then (without
                // no_new_privs) grants the file's capabilities within the
                // bounding set whatever the runtime gave the process before.
                // So the capability came from the image's `setcap`, as it
                // must on Kubernetes, which gives non-root containers no
                // ambient capabilities (podman does).
                assert_eq!(p.cap_amb, 0, "{at}");
                assert!(!p.no_new_privs, "{at}");
            }
        }
    }
}

/// Runs the gateway image's three binaries with capabilities as Kubernetes
/// hands them to a non-root container: in the bounding set only, none in
/// the process's sets (podman would add ambient ones, so `setpriv` clears
/// them and a shell starts with none). They must get their capability
/// from the image's file capabilities alone, and only without
/// no_new_privs (which `allowPrivilegeEscalation: false` sets).
pub(crate) fn capabilities_as_on_kubernetes(containers: &Containers, image: &str) {
    const SCRIPT: &str = r#"
echo "shell CapEff $(grep CapEff /proc/self/status | cut -f2)"
for nnp in "" --no-new-privs; do
    echo "no_new_privs $([ -n "$nnp" ] && echo on || echo off)"
    setpriv $nnp timeout 2 openvpn --dev tun --ifconfig-noexec --verb 3 2>&1 \
        | grep -o -E "TUN/TAP device tun0 opened|TUNSETIFF tun: Operation not permitted" | sed 's/^/openvpn: /'
    setpriv $nnp timeout 2 kresd -n -a 127.0.0.1@53 /tmp >/dev/null 2>&1; echo "kresd: exit $?"
    TOR_PT_MANAGED_TRANSPORT_VER=1 TOR_PT_STATE_LOCATION=/tmp/obfs4 TOR_PT_SERVER_TRANSPORTS=obfs4 \
        TOR_PT_SERVER_BINDADDR=obfs4-127.0.0.1:443 TOR_PT_ORPORT=127.0.0.1:1 \
        setpriv $nnp timeout 2 obfs4proxy 2>&1 | grep -E "^SMETHOD(-ERROR)? " | sed 's/ ARGS:.*//; s/^/obfs4proxy: /'
done
"#;
    let out = run(containers.podman(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--user",
        "10001:10001",
        "--cap-drop",
        "ALL",
        "--cap-add",
        "NET_ADMIN",
        "--cap-add",
        "NET_BIND_SERVICE",
        "--read-only",
        "--tmpfs",
        "/tmp",
        "--device",
        "/dev/net/tun",
        image,
        "setpriv",
        "--inh-caps",
        "-all",
        "--ambient-caps",
        "-all",
        "sh",
        "-c",
        SCRIPT,
    ]));
    assert_eq!(
        out,
        "shell CapEff 0000000000000000\n\
         no_new_privs off\n\
         openvpn: TUN/TAP device tun0 opened\n\
         kresd: exit 124\n\
         obfs4proxy: SMETHOD obfs4 127.0.0.1:443\n\
         no_new_privs on\n\
         openvpn: TUNSETIFF tun: Operation not permitted\n\
         kresd: exit 1\n\
         obfs4proxy: SMETHOD-ERROR obfs4 listen tcp 127.0.0.1:443: bind: permission denied\n",
        "(kresd: exit 124 is still running when timeout stopped it)"
    );
}
