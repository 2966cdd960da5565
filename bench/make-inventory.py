#!/usr/bin/env python3
"""Writes a provider file with many locations, gateways and bridges, for
benchmarks: `make-inventory.py LOCATIONS GATEWAYS BRIDGES > file.toml`.

Locations are spread over real country codes with plausible coordinates;
addresses come from the documentation ranges and 10.0.0.0/8 (never
contacted: clients are not run here)."""

import base64
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the checkout
from benchlib import bridge_table, gateway_table, location_table, provider_table

locations, gateways, bridges = (int(a) for a in sys.argv[1:4])

countries = [
    ("NL", 52.37, 4.89, 1), ("DE", 52.52, 13.40, 1), ("FR", 48.86, 2.35, 1),
    ("GB", 51.51, -0.13, 0), ("US", 40.71, -74.01, -5), ("CA", 45.50, -73.57, -5),
    ("BR", -23.55, -46.63, -3), ("JP", 35.68, 139.69, 9), ("AU", -33.87, 151.21, 10),
    ("SE", 59.33, 18.07, 1), ("IN", 19.08, 72.88, 5), ("SG", 1.35, 103.82, 8),
    ("ZA", -26.20, 28.05, 2), ("MX", 19.43, -99.13, -6), ("AR", -34.60, -58.38, -3),
]
out = [provider_table("bench.test")]
out.append('[service.openvpn_configuration]\ndev = "tun"\npersist-key = true\ncipher = "AES-256-GCM"\n\n')
for i in range(locations):
    cc, lat, lon, tz = countries[i % len(countries)]
    out.append(location_table("loc%03d" % i, "Location %d" % i, cc, lat + i * 0.01, lon, tz))
for i in range(gateways):
    out.append(gateway_table("gw%04d.bench.test" % i, "10.%d.%d.1" % (i // 256 % 256, i % 256),
                             "loc%03d" % (i % locations), 1194, "udp" if i % 2 else "tcp",
                             load=(i * 37 % 100) / 100))
for i in range(bridges):
    cert = base64.b64encode(f"bench-cert-{i:06}".encode().ljust(52, b".")).decode().rstrip("=")
    out.append(bridge_table("br%04d.bench.test" % i, "10.200.%d.1" % (i % 256), "loc%03d" % (i % locations), 443, cert))
sys.stdout.write("".join(out))
