//! Three replicas surviving a crash and a database outage.

use menshen_e2e::http::json_of;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_behind_traefik_survive_a_crash_and_a_database_outage() {
    let Some(traefik_bin) = traefik() else {
        return;
    };
    let Some(pg) = PrivatePostgres::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (ca_cert, ca_key) = openssl_ca(dir.path());
    let (proxy_cert, proxy_key) = tls_certificate(dir.path(), &ca_cert, &ca_key, HOST, "127.0.0.1");
    let provider = provider_file().write(dir.path());
    let geoip = write_geoip(dir.path());
    let key = signing_key(dir.path());

    let ports: Vec<u16> = (0..3).map(|_| free_tcp_port()).collect();
    let common: Vec<String> = [
        "--database-url",
        &pg.url,
        "--config",
        path_str(&provider),
        "--signing-key-file",
        path_str(&key),
        "--ca-cert",
        path_str(&ca_cert),
        "--ca-key",
        path_str(&ca_key),
        "--geoip-db",
        path_str(&geoip),
        "--trusted-proxies",
        "127.0.0.1",
        "--resource-ttl",
        "8s",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let start_replica = |port: u16| {
        let listen = format!("127.0.0.1:{port}");
        let mut args: Vec<&str> = common.iter().map(String::as_str).collect();
        args.extend(["--listen", &listen]);
        Menshen::start(&args)
    };
    let mut replicas: Vec<Option<Menshen>> = std::thread::scope(|s| {
        let started: Vec<_> = ports
            .iter()
            .map(|&p| s.spawn(move || start_replica(p)))
            .collect();
        started
            .into_iter()
            .map(|h| Some(h.join().unwrap()))
            .collect()
    });

    // Traefik's health checks go to /readyz, as the chart's probes do: it
    // stays 200 while the database is unreachable, so the outage takes no
    // replica out of rotation.
    let mut traefik = Traefik::start(
        &traefik_bin,
        dir.path(),
        &traefik_dynamic(&proxy_cert, &proxy_key, &ports, "/readyz"),
        &[],
    );
    let client = h2_client(&ca_cert, &traefik);
    let gateways_url = traefik.url("/api/5/gateways");
    assert!(
        routed(&client, &traefik, "/provider.json").await,
        "Traefik never routed to menshen:\n{}",
        std::fs::read_to_string(dir.path().join("traefik.log")).unwrap_or_default()
    );

    // HTTP/2 over TLS, as bitmask-core speaks it.
    let response = client.get(&gateways_url).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    // Placement through Traefik: X-Forwarded-For from a trusted hop is
    // believed, so a Dutch address gets Amsterdam first; without it the
    // client's own address (in Japan here) counts.
    let dutch = json_of(
        client
            .get(&gateways_url)
            .header("X-Forwarded-For", "203.0.113.5"),
    )
    .await;
    assert_eq!(dutch[0]["location"], "amsterdam", "{dutch}");
    let local = list(&client, &gateways_url).await;
    assert_eq!(local[0]["location"], "tokyo", "{local}");

    // Agents: two pushing as fast as they can, through Traefik, and a real
    // menshen-agent with one bridge.
    let store_args = [
        "--database-url",
        pg.url.as_str(),
        "--signing-key-file",
        path_str(&key),
    ];
    let token = |name: &str| {
        let mut args = vec!["agent", "create", name];
        args.extend(store_args);
        menshen_cli(&args)
    };
    let push_url = traefik.url("/api/5/agent/gateways");
    let pushers: Vec<Pusher> = (0..2)
        .map(|i| {
            Pusher::start(
                &client,
                push_url.clone(),
                token(&format!("storm-{i}")),
                format!("storm-{i}.ams"),
            )
        })
        .collect();
    let bridge_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let state = dir.path().join("obfs4");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(
        state.join("obfs4_bridgeline.txt"),
        "Bridge obfs4 <IP ADDRESS>:<PORT> <FINGERPRINT> cert=bWVuc2hlbiB0cmFlZmlrIHN0b3J5IGJyaWRnZS4uLi4uLi4uLi4uLi4uLi4uLi4uLi4uLg iat-mode=0\n",
    )
    .unwrap();
    let agent_config = write_agent_config(
        dir.path(),
        &format!("https://127.0.0.1:{}", traefik.port),
        &token("ams1"),
        &format!(
            r#"interval = "1s"
check_interval = "500ms"

[retry]
initial = "200ms"
max = "2s"

[host]
name = "ams1.vpn.test"
ip_addr = "127.0.0.1"
location = "amsterdam"

[[obfs4]]
host = "br1.ams1.vpn.test"
port = {bridge}
state_dir = "{state}"
probe_addr = "127.0.0.1:{bridge}"
"#,
            bridge = bridge_port.local_addr().unwrap().port(),
            state = path_str(&state),
        ),
    );
    let mut agent = {
        let mut command = agent_command(&agent_config);
        command
            .env("RUST_LOG", "info")
            // The agent trusts the test CA that Traefik's certificate chains to.
            .env("SSL_CERT_FILE", &ca_cert);
        Process::spawn(command)
    };
    let bridges_url = traefik.url("/api/5/bridges");
    assert!(
        wait_until(PATIENCE, || async {
            find(&list(&client, &bridges_url).await, "br1.ams1.vpn.test").is_some()
        })
        .await,
        "the agent's bridge never got listed:\n{}",
        agent.drain_log()
    );

    // 1. kill -9 one replica under client load: no client sees a failure.
    let load = ClientLoad::start(&client, gateways_url.clone(), 4);
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(replicas[0].take()); // SIGKILL
    tokio::time::sleep(Duration::from_secs(3)).await;
    load.assert_no_failures("replica killed");

    // 2. It comes back on the same port and rejoins: Traefik sends it
    //    clients again.
    let back = start_replica(ports[0]);
    let rejoined = wait_until(PATIENCE, || async {
        served_lists(&back.metrics_url).await > 0
    })
    .await;
    assert!(rejoined, "the restarted replica got no clients");
    replicas[0] = Some(back);
    load.assert_no_failures("replica back");

    // 3. Postgres really stopped for 30 s: clients keep getting answers,
    //    nothing pushed expires (8 s TTL), pushes are refused, not lost.
    // Only what the agent logs from now on counts below.
    agent.drain_log();
    pg.stop();
    let stopped = Instant::now();
    let refused_before: u64 = pushers
        .iter()
        .map(|p| p.refused.load(Ordering::Relaxed))
        .sum();
    while stopped.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let bridges = list(&client, &bridges_url).await;
        assert!(
            find(&bridges, "br1.ams1.vpn.test").is_some(),
            "the bridge expired during the outage ({:?} in)",
            stopped.elapsed()
        );
    }
    let refused_during: u64 = pushers
        .iter()
        .map(|p| p.refused.load(Ordering::Relaxed))
        .sum::<u64>()
        - refused_before;
    assert!(refused_during > 0, "pushes were refused during the outage");
    load.assert_no_failures("database stopped");

    // 4. Postgres back: agents' pushes are accepted again.
    pg.start_again();
    let back_at = Instant::now();
    assert!(
        agent
            .wait_for_line(PATIENCE, |l| l.contains("succeeded after"))
            .is_some(),
        "menshen-agent never pushed again:\n{}",
        agent.drain_log()
    );
    eprintln!(
        "menshen-agent pushed again {:?} after Postgres was back",
        back_at.elapsed()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    load.assert_no_failures("database back");
    let (answered, _) = load.counts();
    load.stop().await;
    eprintln!("{answered} client requests through Traefik, none failed");

    // No acknowledged push was lost: every replica lists each pusher's
    // last acknowledged load.
    for (i, pusher) in pushers.into_iter().enumerate() {
        let acked = pusher.stop().await.expect("some pushes were acknowledged");
        let host = format!("storm-{i}.ams");
        for replica in replicas.iter().flatten() {
            let url = format!("{}/api/5/gateways", replica.url);
            let stored = wait_until(PATIENCE, || async {
                let list: Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
                find(&list, &host).is_some_and(|g| g["load"].as_f64() == Some(acked))
            })
            .await;
            assert!(
                stored,
                "{host}: the last acknowledged load {acked} is not listed at {url}"
            );
        }
    }
    let _ = agent.terminate(Duration::from_secs(5));
    let _ = traefik.process.terminate(Duration::from_secs(5));
}
