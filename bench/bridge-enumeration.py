#!/usr/bin/env python3
"""How many bridges a censor learns from menshen, and how evenly clients
are spread over them (stdlib only; run through bench/bridge-enumeration.sh,
which builds the binary).

    bench/bridge-enumeration.py [BRIDGES] [TRIALS] [CLIENTS]

With BRIDGES (100) public obfs4 bridges in 10 locations, menshen serves
behind a "proxy" at 127.0.0.1 (--trusted-proxies), so each request names
its client address in X-Forwarded-For:

1. what one request reveals with --bridges-per-client 0 (everything, as
   before bridges were shared out);
2. with the default share (2 per transport, one transport here), how many
   distinct bridges an attacker learns from N distinct /16 networks, one
   request each (in TRIALS runs with other random networks; mean, min and
   max), beside what N random pairs would give (100 * (1 - 0.98^N));
3. what one network learns by asking once per location (loc=) instead;
4. how CLIENTS random IPv4 addresses spread over the bridges: clients per
   bridge, min/median/max and coefficient of variation, beside what
   assigning each client two bridges uniformly at random would give;
5. how many networks' shares change when one bridge of BRIDGES goes
   (a server with the same key and one bridge less).
"""

import base64
import http.client
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True  # no __pycache__ in the checkout
from benchlib import binary, free_port, start, stop_all

MENSHEN = binary("menshen")
HERE = os.path.dirname(os.path.abspath(__file__))
LOCATIONS = 10
PER_CLIENT = 2
NS = [1, 2, 5, 10, 20, 50, 100, 200, 500]


def serve(work, name, bridges, per_client, key_file):
    """A menshen on its own SQLite store serving BRIDGES bridges; returns
    its address."""
    inventory = os.path.join(work, "%s.toml" % name)
    with open(inventory, "w") as f:
        subprocess.run([sys.executable, os.path.join(HERE, "make-inventory.py"), str(LOCATIONS), "0",
                        str(bridges)], stdout=f, check=True)
    port = free_port()
    addr = "127.0.0.1:%d" % port
    start(name, [MENSHEN, "--log-level", "warn", "serve", "--listen", addr,
                 "--data-dir", os.path.join(work, name), "--config", inventory,
                 "--signing-key-file", key_file, "--trusted-proxies", "127.0.0.1",
                 "--bridges-per-client", str(per_client)],
          os.path.join(work, "%s.log" % name), addr, "/readyz")
    return addr


class Client:
    """Keeps one connection to a server and asks for bridge lists as the
    proxy would forward them."""

    def __init__(self, addr):
        self.conn = http.client.HTTPConnection(addr, timeout=10)

    def hosts(self, address, query=""):
        self.conn.request("GET", "/api/5/bridges" + query, headers={"X-Forwarded-For": address})
        r = self.conn.getresponse()
        body = r.read()
        if r.status != 200:
            sys.exit("GET /api/5/bridges%s for %s: %d %s" % (query, address, r.status, body[:200]))
        return frozenset(b["host"] for b in json.loads(body))


def random_networks(rng, n):
    """N distinct /16 networks, as an address in each."""
    nets = rng.sample(range(1 << 16), n)
    return ["%d.%d.%d.%d" % (x >> 8, x & 255, rng.randrange(256), rng.randrange(1, 255)) for x in nets]


def main():
    bridges = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    trials = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    clients = int(sys.argv[3]) if len(sys.argv) > 3 else 10_000
    rng = random.Random(14)
    work = tempfile.mkdtemp(prefix="menshen-bridges-")
    key_file = os.path.join(work, "signing.key")
    with open(key_file, "w") as f:
        f.write(base64.b64encode(os.urandom(32)).decode() + "\n")
    try:
        everything = Client(serve(work, "all", bridges, 0, key_file))
        shared = Client(serve(work, "shared", bridges, PER_CLIENT, key_file))
        fewer = Client(serve(work, "fewer", bridges - 1, PER_CLIENT, key_file))

        print("== %d public bridges (one transport) in %d locations, --bridges-per-client %d, "
              "one request per network" % (bridges, LOCATIONS, PER_CLIENT))
        print("one request, --bridges-per-client 0: %d bridges" % len(everything.hosts("198.51.100.1")))
        print()
        print("%6s  %20s  %12s  %s" % ("/16s", "learned (mean)", "min-max", "random pairs"))
        learned = {n: [] for n in NS}
        for _ in range(trials):
            seen = set()
            networks = random_networks(rng, max(NS))
            for i, address in enumerate(networks, 1):
                seen |= shared.hosts(address)
                if i in learned:
                    learned[i].append(len(seen))
        for n in NS:
            got = learned[n]
            expected = bridges * (1 - (1 - PER_CLIENT / bridges) ** n)
            print("%6d  %14.1f (%3.0f%%)  %5d-%-6d  %.1f" % (
                n, statistics.mean(got), 100 * statistics.mean(got) / bridges, min(got), max(got), expected))
        print("(%d trials of %d random /16 networks each)" % (trials, max(NS)))
        print()

        address = "203.0.113.7"
        by_location = set()
        for i in range(LOCATIONS):
            by_location |= shared.hosts(address, "?loc=loc%03d" % i)
        print("one network asking once per location (loc=, %d requests): %d bridges"
              % (LOCATIONS, len(by_location)))
        print()

        counts = {}
        for _ in range(clients):
            a = "%d.%d.%d.%d" % (rng.randrange(1, 224), rng.randrange(256), rng.randrange(256), rng.randrange(1, 255))
            for host in shared.hosts(a):
                counts[host] = counts.get(host, 0) + 1
        per_bridge = [counts.get(h, 0) for h in everything.hosts("198.51.100.1")]
        uniform = [0] * bridges
        for _ in range(clients):
            for i in rng.sample(range(bridges), PER_CLIENT):
                uniform[i] += 1

        def spread(values):
            mean = statistics.mean(values)
            return "min %4d  median %6.1f  max %4d  mean %6.1f  CV %.3f" % (
                min(values), statistics.median(values), max(values), mean, statistics.pstdev(values) / mean)

        print("== %d random client addresses (%d bridges each) over %d bridges: clients per bridge"
              % (clients, PER_CLIENT, bridges))
        print("ring:             " + spread(per_bridge))
        print("uniform at random " + spread(uniform))
        print()

        moved = had = 0
        networks = random_networks(rng, 2000)
        # make-inventory.py names bridges in order: the last is left out.
        gone = "br%04d.bench.test" % (bridges - 1)
        for address in networks:
            before, after = shared.hosts(address), fewer.hosts(address)
            had += gone in before
            moved += before != after
        print("== one bridge (%s) of %d removed: %d of %d networks got other bridges; %d of them had it"
              % (gone, bridges, moved, len(networks), had))
    finally:
        stop_all()
        subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
