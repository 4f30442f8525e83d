#!/usr/bin/env python3
"""Sync benchmark for any Matrix homeserver (standard library only).

Measures, over the Client-Server API on loopback:
  wake     latency from a send returning to another user's parked /sync
           returning with it (p50, p99 over --wake-trials)
  parked   --parked long-polls parked at once: server RSS growth (needs
           --pid), and /versions and send latency while they wait (p50, p99);
           then one message wakes them all (time until every one returned)
  initial  initial /sync of a user in --rooms rooms with --history messages
           each (median of --initial-trials), and a no-op incremental sync

    contrib/bench/sync.py --base-url http://127.0.0.1:8008 --pid 1234

Start Hearth for it with open registration and the rate limits raised:

    HEARTH_RATE_LIMIT_PER_SECOND=100000 HEARTH_RATE_LIMIT_BURST=100000 \\
      target/release/hearth serve --registration open --database /tmp/bench.db

Every loop is bounded in count and time; it talks only to --base-url.
"""

import argparse
import json
import statistics
import sys
import threading
import time
import urllib.parse
import uuid

import benchlib
from benchlib import API, Conn, pct, rss_kib
WAKE_FILTER = urllib.parse.quote(json.dumps({"room": {"timeline": {"limit": 10}}}))


def must(result, what):
    status, body = result
    if status != 200:
        sys.exit(f"sync.py: {what}: HTTP {status}: {body}")
    return body


def register(conn, name):
    return benchlib.register(conn, name, "bench-" + name)


def send(conn, token, room_q, txn, body):
    return must(conn.req("PUT", f"{API}/rooms/{room_q}/send/m.room.message/{txn}",
                         {"msgtype": "m.text", "body": body}, token), "send")["event_id"]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base-url", default="http://127.0.0.1:8008")
    p.add_argument("--pid", type=int, help="server PID, for RSS")
    p.add_argument("--wake-trials", type=int, default=100)
    p.add_argument("--park-delay", type=float, default=0.2, help="s to let a sync park before the send")
    p.add_argument("--parked", type=int, default=1000)
    p.add_argument("--probes", type=int, default=50)
    p.add_argument("--rooms", type=int, default=100)
    p.add_argument("--history", type=int, default=50)
    p.add_argument("--initial-trials", type=int, default=5)
    a = p.parse_args()
    run = uuid.uuid4().hex[:8]
    out = {}
    c = Conn(a.base_url)
    ta = register(c, f"sa{run}")
    tb = register(c, f"sb{run}")
    room = must(c.req("POST", API + "/createRoom", {"preset": "public_chat"}, ta), "createRoom")["room_id"]
    room_q = urllib.parse.quote(room)
    must(c.req("POST", f"{API}/rooms/{room_q}/join", {}, tb), "join")

    # Wake latency: B parks, A sends; from A's 200 to B's answer.
    cb = Conn(a.base_url)
    token = must(cb.req("GET", f"{API}/sync?filter={WAKE_FILTER}", None, tb), "sync")["next_batch"]
    lat = []
    for i in range(a.wake_trials):
        got = {}

        def park():
            got["r"] = cb.req("GET", f"{API}/sync?since={token}&timeout=30000&filter={WAKE_FILTER}", None, tb)
            got["t"] = time.perf_counter()

        th = threading.Thread(target=park)
        th.start()
        time.sleep(a.park_delay)
        send(c, ta, room_q, f"wake{run}{i}", f"wake {i}")
        sent = time.perf_counter()
        th.join(60)
        body = must(got["r"], "parked sync")
        token = body["next_batch"]
        lat.append((got["t"] - sent) * 1000)
    out["wake_ms_p50"] = round(statistics.median(lat), 3)
    out["wake_ms_p99"] = round(pct(lat, 0.99), 3)

    # Many parked long-polls.
    token = must(cb.req("GET", f"{API}/sync?filter={WAKE_FILTER}", None, tb), "sync")["next_batch"]
    rss_before = rss_kib(a.pid) if a.pid else None
    results = []
    lock = threading.Lock()

    def parked_sync():
        conn = Conn(a.base_url, timeout=90)
        r = conn.req("GET", f"{API}/sync?since={token}&timeout=60000&filter={WAKE_FILTER}", None, tb)
        with lock:
            results.append((r[0], time.perf_counter()))

    threads = [threading.Thread(target=parked_sync, daemon=True) for _ in range(a.parked)]
    for t in threads:
        t.start()
    time.sleep(3)
    rss_parked = rss_kib(a.pid) if a.pid else None
    versions, sends = [], []
    probe = Conn(a.base_url)
    for i in range(a.probes):
        t0 = time.perf_counter()
        must(probe.req("GET", "/_matrix/client/versions"), "versions")
        versions.append((time.perf_counter() - t0) * 1000)
    with lock:
        early = len(results)
    if early:
        sys.exit(f"sync.py: {early} parked syncs returned before anything was sent")
    # Each probe send wakes every parked sync; measure a send against a
    # separate room so the parked ones stay parked.
    other = must(c.req("POST", API + "/createRoom", {"preset": "private_chat"}, ta), "createRoom")["room_id"]
    other_q = urllib.parse.quote(other)
    for i in range(a.probes):
        t0 = time.perf_counter()
        send(c, ta, other_q, f"probe{run}{i}", "probe")
        sends.append((time.perf_counter() - t0) * 1000)
    t0 = time.perf_counter()
    send(c, ta, room_q, f"fan{run}", "everyone wake")
    for t in threads:
        t.join(90)
    ok = sum(1 for s, _ in results if s == 200)
    out["parked"] = a.parked
    out["parked_woken_ok"] = ok
    out["parked_all_woken_s"] = round(max(t for _, t in results) - t0, 3) if results else None
    out["parked_versions_ms_p50"] = round(statistics.median(versions), 3)
    out["parked_versions_ms_p99"] = round(pct(versions, 0.99), 3)
    out["parked_send_ms_p50"] = round(statistics.median(sends), 3)
    out["parked_send_ms_p99"] = round(pct(sends, 0.99), 3)
    if rss_before is not None and rss_parked is not None:
        out["rss_before_mib"] = round(rss_before / 1024, 1)
        out["rss_parked_growth_mib"] = round((rss_parked - rss_before) / 1024, 1)

    # Initial sync of a user in many rooms with history.
    tc = register(c, f"sc{run}")
    for r in range(a.rooms):
        rid = must(c.req("POST", API + "/createRoom", {"preset": "private_chat", "name": f"room {r}"}, tc),
                   "createRoom")["room_id"]
        rq = urllib.parse.quote(rid)
        for m in range(a.history):
            send(c, tc, rq, f"h{run}{r}-{m}", f"history {m}")
    times = []
    for _ in range(a.initial_trials):
        t0 = time.perf_counter()
        body = must(c.req("GET", f"{API}/sync?filter={WAKE_FILTER}", None, tc), "initial sync")
        times.append((time.perf_counter() - t0) * 1000)
        if len(body["rooms"]["join"]) != a.rooms:
            sys.exit(f"sync.py: initial sync listed {len(body['rooms']['join'])} rooms, expected {a.rooms}")
    out["initial_sync_rooms"] = a.rooms
    out["initial_sync_ms_p50"] = round(statistics.median(times), 1)
    nxt = body["next_batch"]
    times = []
    for _ in range(20):
        t0 = time.perf_counter()
        must(c.req("GET", f"{API}/sync?since={nxt}&timeout=0&filter={WAKE_FILTER}", None, tc), "noop sync")
        times.append((time.perf_counter() - t0) * 1000)
    out["noop_sync_ms_p50"] = round(statistics.median(times), 3)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
