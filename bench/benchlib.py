"""Helpers shared by bench/scale-out.py and bench/make-inventory.py, the
Python side of bench/lib.sh: where the binaries are, free ports, servers
started with their log kept and waited for with a deadline, and the tables
of a provider file.

Environment: MENSHEN_BENCH_PREBUILT=DIR takes the binaries from DIR instead
of the target folder's release/; MENSHEN_BENCH_WAIT (seconds, default 60)
bounds how long a server may take to answer."""

import http.client
import os
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))

# The inventories of benchmarks use private and documentation addresses.
os.environ["MENSHEN_ALLOW_PRIVATE_ADDRESSES"] = "true"


def binary(name):
    """A binary of the workspace: under MENSHEN_BENCH_PREBUILT if set (built
    already, e.g. of another revision to compare), else a release build."""
    folder = os.environ.get("MENSHEN_BENCH_PREBUILT") or os.path.join(TARGET, "release")
    return os.path.join(os.path.abspath(folder), name)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def get(addr, path, conn=None, headers=None):
    own = conn is None
    conn = conn or http.client.HTTPConnection(addr, timeout=10)
    conn.request("GET", path, headers=headers or {})
    r = conn.getresponse()
    body = r.read()
    if own:
        conn.close()
    return r.status, body


def fail(message, log=None):
    """Exits with MESSAGE and the last lines of LOG."""
    if log and os.path.exists(log) and os.path.getsize(log):
        with open(log, errors="replace") as f:
            tail = f.read().splitlines()[-20:]
        message += "\nits log ends:\n" + "\n".join("  " + line for line in tail)
    sys.exit(message)


# Every process started with start(), killed by stop_all().
STARTED = []


def start(name, args, log, addr, path, env=None):
    """Starts ARGS, its output appended to LOG, and waits until GET PATH on
    ADDR answers 200 (see wait_http). Returns the process."""
    with open(log, "a") as out:
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)
    STARTED.append(proc)
    wait_http(name, addr, path, proc, log)
    return proc


def wait_http(name, addr, path, proc=None, log=None):
    """Waits until GET PATH on ADDR answers 200; exits (with LOG's tail) if
    PROC ends first or MENSHEN_BENCH_WAIT seconds pass."""
    limit = float(os.environ.get("MENSHEN_BENCH_WAIT", "60"))
    deadline = time.time() + limit
    url = "http://%s%s" % (addr, path)
    while True:
        try:
            if get(addr, path)[0] == 200:
                return
        except (OSError, http.client.HTTPException):
            pass
        if proc is not None and proc.poll() is not None:
            fail("%s did not start: it exited (status %d) before %s answered" % (name, proc.returncode, url), log)
        if time.time() > deadline:
            fail("%s did not start: no answer from %s within %g s" % (name, url, limit), log)
        time.sleep(0.05)


def stop_all():
    for proc in STARTED:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# The tables of a provider file (menshen's --config), each followed by a
# blank line.


def provider_table(domain):
    return '[provider]\ndomain = "%s"\napi_uri = "https://api.%s"\n\n' % (domain, domain)


def location_table(name, display_name, country_code, lat, lon, timezone=None):
    text = '[locations.%s]\ndisplay_name = "%s"\ncountry_code = "%s"\n' % (name, display_name, country_code)
    text += "lat = %.2f\nlon = %.2f\n" % (lat, lon)
    if timezone is not None:
        text += "timezone = %d\n" % timezone
    return text + "\n"


def gateway_table(host, ip_addr, location, port, transport, load=None):
    text = '[[gateway]]\nhost = "%s"\nip_addr = "%s"\n' % (host, ip_addr)
    text += 'location = "%s"\nport = %d\ntransport = "%s"\n' % (location, port, transport)
    if load is not None:
        text += "load = %.2f\n" % load
    return text + "\n"


def bridge_table(host, ip_addr, location, port, cert, iat_mode="0"):
    """An obfs4 bridge; CERT is the unpadded base64 of 52 bytes."""
    text = '[[bridge]]\nhost = "%s"\nip_addr = "%s"\n' % (host, ip_addr)
    text += 'location = "%s"\nport = %d\ntype = "obfs4"\n' % (location, port)
    text += 'options = { cert = "%s", iatMode = "%s" }\n' % (cert, iat_mode)
    return text + "\n"
