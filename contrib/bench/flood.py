#!/usr/bin/env python3
"""Connection-flood benchmark for any Matrix homeserver (standard library only).

While --idle connections sit open sending nothing and --slow slowloris
connections trickle a request head one byte at a time (each one that the
server closes is reopened at once), for --seconds:
  versions   GET /_matrix/client/versions on a new connection every
             --interval s: p50, p99, failures (no answer within 5 s, or an
             error)
  send       a message send on a new connection every --interval s: same
  rss        server RSS before, with the idle connections open, and at the
             peak of the flood (needs --pid); idle bytes per connection
Then, with the flood still on, --parked /sync long-polls park and one
message wakes them: the time until every one has its answer.

    contrib/bench/flood.py --base-url http://127.0.0.1:8008 --pid 1234

Start the server with open registration, rate limits raised and room for
the connections (contrib/bench/run.sh flood does). Every loop is bounded in
count and time; it talks only to --base-url.
"""

import argparse
import http.client
import json
import resource
import selectors
import socket
import statistics
import sys
import threading
import time
import urllib.parse
import uuid

import benchlib
from benchlib import API, Conn, pct, rss_kib

FILTER = urllib.parse.quote(json.dumps({"room": {"timeline": {"limit": 1}}}))


def r3(x):
    return round(x, 3) if x is not None else None


def open_socket(host, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setblocking(False)
    s.connect_ex((host, port))
    return s


class Flood:
    """Idle and slowloris connections, kept open from one thread."""

    def __init__(self, host, port, idle, slow):
        self.host, self.port = host, port
        self.idle = [open_socket(host, port) for _ in range(idle)]
        self.slow = {}
        self.reopened = 0
        self.stop = threading.Event()
        self.sel = selectors.DefaultSelector()
        for _ in range(slow):
            self._open_slow()

    def _open_slow(self):
        s = open_socket(self.host, self.port)
        self.slow[s.fileno()] = (s, 0)
        self.sel.register(s, selectors.EVENT_READ)

    def run(self):
        head = b"GET /_matrix/client/versions HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100000
        while not self.stop.is_set():
            # One byte more on every slowloris connection, then look for
            # the ones the server answered or closed.
            for fd, (s, sent) in list(self.slow.items()):
                try:
                    s.send(head[sent:sent + 1])
                    self.slow[fd] = (s, sent + 1)
                except (BlockingIOError, OSError):
                    pass
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline and not self.stop.is_set():
                for key, _ in self.sel.select(timeout=0.2):
                    s = key.fileobj
                    try:
                        data = s.recv(65536)
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = b""
                    if not data:
                        self.sel.unregister(s)
                        self.slow.pop(s.fileno(), None)
                        s.close()
                        self.reopened += 1
                        self._open_slow()

    def close(self):
        self.stop.set()
        for s in self.idle:
            s.close()
        for s, _ in self.slow.values():
            s.close()


def timed(fn, fails, out):
    t0 = time.perf_counter()
    try:
        if fn():
            out.append((time.perf_counter() - t0) * 1000)
            return
    except (OSError, http.client.HTTPException):
        pass
    fails.append(1)


def versions_once(host, port):
    c = http.client.HTTPConnection(host, port, timeout=5)
    try:
        c.request("GET", "/_matrix/client/versions")
        return c.getresponse().status == 200
    finally:
        c.close()


def send_once(host, port, token, room_q, txn):
    c = http.client.HTTPConnection(host, port, timeout=5)
    try:
        body = json.dumps({"msgtype": "m.text", "body": txn})
        c.request("PUT", f"{API}/rooms/{room_q}/send/m.room.message/{txn}", body=body,
                  headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
        r = c.getresponse()
        r.read()
        return r.status == 200
    finally:
        c.close()


def park_and_wake(host, port, token, room_q, sender, count, run):
    """Parks `count` syncs on raw sockets; one send wakes them; seconds until all answered."""
    _, r = Conn(f"http://{host}:{port}").req("GET", f"{API}/sync?filter={FILTER}", None, token)
    since = r["next_batch"]
    sel = selectors.DefaultSelector()
    req = (f"GET {API}/sync?since={since}&timeout=60000&filter={FILTER} HTTP/1.1\r\n"
           f"Host: x\r\nAuthorization: Bearer {token}\r\n\r\n").encode()
    socks = []
    for _ in range(count):
        s = socket.create_connection((host, port), timeout=10)
        s.sendall(req)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        socks.append(s)
    time.sleep(3)  # let them park (the count below checks none answered early)
    early = sum(1 for _ in sel.select(timeout=0))
    c = Conn(f"http://{host}:{port}")
    status, _ = c.req("PUT", f"{API}/rooms/{room_q}/send/m.room.message/wake{run}",
                      {"msgtype": "m.text", "body": "wake"}, sender)
    t0 = time.perf_counter()
    answered = set()
    deadline = t0 + 30
    while len(answered) < count and time.perf_counter() < deadline:
        for key, _ in sel.select(timeout=0.5):
            answered.add(key.fileobj.fileno())
            sel.unregister(key.fileobj)
    took = time.perf_counter() - t0
    for s in socks:
        s.close()
    return {"parked": count, "early": early, "answered": len(answered), "send_status": status,
            "all_woken_s": round(took, 3)}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base-url", default="http://127.0.0.1:8008")
    p.add_argument("--pid", type=int, help="server PID, for RSS")
    p.add_argument("--idle", type=int, default=10000)
    p.add_argument("--slow", type=int, default=1000)
    p.add_argument("--parked", type=int, default=2000)
    p.add_argument("--seconds", type=float, default=30)
    p.add_argument("--interval", type=float, default=0.05)
    p.add_argument("--label", default="server")
    a = p.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    u = urllib.parse.urlsplit(a.base_url)
    host, port = u.hostname, u.port or 80
    run = uuid.uuid4().hex[:8]
    c = Conn(a.base_url)
    sender = benchlib.register(c, f"fa{run}", "bench-a")
    waiter = benchlib.register(c, f"fb{run}", "bench-b")
    status, r = c.req("POST", API + "/createRoom", {"preset": "public_chat"}, sender)
    room_q = urllib.parse.quote(r["room_id"])
    c.req("POST", f"{API}/rooms/{room_q}/join", {}, waiter)

    out = {"label": a.label, "idle": a.idle, "slow": a.slow, "seconds": a.seconds}
    rss0 = rss_kib(a.pid)
    flood = Flood(host, port, a.idle, a.slow)
    time.sleep(2)
    rss_idle = rss_kib(a.pid)
    th = threading.Thread(target=flood.run, daemon=True)
    th.start()
    versions, vfail, sends, sfail = [], [], [], []
    rss_peak = rss_idle or 0
    end = time.monotonic() + a.seconds
    i = 0
    while time.monotonic() < end:
        timed(lambda: versions_once(host, port), vfail, versions)
        timed(lambda: send_once(host, port, sender, room_q, f"f{run}{i}"), sfail, sends)
        i += 1
        rss_peak = max(rss_peak, rss_kib(a.pid) or 0)
        time.sleep(a.interval)
    out["versions_ms_p50"] = r3(pct(versions, 0.5))
    out["versions_ms_p99"] = r3(pct(versions, 0.99))
    out["versions_ok"], out["versions_failed"] = len(versions), len(vfail)
    out["send_ms_p50"] = r3(pct(sends, 0.5))
    out["send_ms_p99"] = r3(pct(sends, 0.99))
    out["send_ok"], out["send_failed"] = len(sends), len(sfail)
    out["slowloris_reopened"] = flood.reopened
    if rss0:
        out["rss_before_mib"] = round(rss0 / 1024, 1)
        out["rss_idle_mib"] = round((rss_idle or 0) / 1024, 1)
        out["rss_peak_mib"] = round(rss_peak / 1024, 1)
        out["rss_growth_mib"] = round((rss_peak - rss0) / 1024, 1)
        if a.idle:
            out["idle_bytes_per_conn"] = round(((rss_idle or 0) - rss0) * 1024 / a.idle)
    try:
        out["wake"] = park_and_wake(host, port, waiter, room_q, sender, a.parked, run)
    except OSError as e:
        out["wake"] = {"error": str(e)}
    flood.close()
    print(json.dumps(out))


if __name__ == "__main__":
    sys.exit(main())
