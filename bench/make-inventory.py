#!/usr/bin/env python3
"""Writes a provider file with many locations, gateways and bridges, for
benchmarks: `make-inventory.py LOCATIONS GATEWAYS BRIDGES > file.toml`.

Locations are spread over real country codes with plausible coordinates;
addresses come from the documentation ranges and 10.0.0.0/8 (never
contacted: clients are not run here)."""

import base64
import sys

locations, gateways, bridges = (int(a) for a in sys.argv[1:4])

countries = [
    ("NL", 52.37, 4.89, 1), ("DE", 52.52, 13.40, 1), ("FR", 48.86, 2.35, 1),
    ("GB", 51.51, -0.13, 0), ("US", 40.71, -74.01, -5), ("CA", 45.50, -73.57, -5),
    ("BR", -23.55, -46.63, -3), ("JP", 35.68, 139.69, 9), ("AU", -33.87, 151.21, 10),
    ("SE", 59.33, 18.07, 1), ("IN", 19.08, 72.88, 5), ("SG", 1.35, 103.82, 8),
    ("ZA", -26.20, 28.05, 2), ("MX", 19.43, -99.13, -6), ("AR", -34.60, -58.38, -3),
]
print('[provider]\ndomain = "bench.test"\napi_uri = "https://api.bench.test"\n')
print('[service.openvpn_configuration]\ndev = "tun"\npersist-key = true\ncipher = "AES-256-GCM"\n')
for i in range(locations):
    cc, lat, lon, tz = countries[i % len(countries)]
    print(f'[locations.loc{i:03}]\ndisplay_name = "Location {i}"\ncountry_code = "{cc}"')
    print(f'lat = {lat + i * 0.01:.2f}\nlon = {lon:.2f}\ntimezone = {tz}\n')
for i in range(gateways):
    print('[[gateway]]')
    print(f'host = "gw{i:04}.bench.test"\nip_addr = "10.{i // 256 % 256}.{i % 256}.1"')
    print(f'location = "loc{i % locations:03}"\nport = 1194\ntransport = "{"udp" if i % 2 else "tcp"}"')
    print(f'load = {(i * 37 % 100) / 100:.2f}\n')
for i in range(bridges):
    print('[[bridge]]')
    print(f'host = "br{i:04}.bench.test"\nip_addr = "10.200.{i % 256}.1"')
    print(f'location = "loc{i % locations:03}"\nport = 443\ntype = "obfs4"')
    # an obfs4 cert is the unpadded base64 of 52 bytes
    cert = base64.b64encode(f"bench-cert-{i:06}".encode().ljust(52, b".")).decode().rstrip("=")
    print(f'options = {{ cert = "{cert}", iatMode = "0" }}\n')
