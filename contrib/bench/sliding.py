#!/usr/bin/env python3
"""Sliding sync benchmark (MSC4186) for any homeserver that serves it
(standard library only). Measures, over loopback:

  first    a user in --rooms rooms: the first sliding sync of a new
           connection, range 0-19, timeline_limit 1 (median of --trials)
  wake     from a send returning to another user's parked sliding sync
           returning with it (p50, p99 over --wake-trials)
  parked   --parked parked /sync long-polls, then as many parked sliding
           syncs: the server's RSS growth for each (needs --pid), and all
           woken by one message

    contrib/bench/run.sh sliding [--rooms 500 --parked 1000]

Every loop is bounded; it talks only to --base-url.
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

SLIDING = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"
LIST = {"lists": {"all": {
    "ranges": [[0, 19]], "timeline_limit": 1,
    "required_state": [["m.room.name", ""], ["m.room.avatar", ""], ["m.room.encryption", ""],
                       ["m.room.member", "$LAZY"], ["m.room.create", ""]],
}}}


def must(result, what):
    status, body = result
    if status != 200:
        sys.exit(f"sliding.py: {what}: HTTP {status}: {body}")
    return body


def send(conn, token, room_q, txn, body):
    return must(conn.req("PUT", f"{API}/rooms/{room_q}/send/m.room.message/{txn}",
                         {"msgtype": "m.text", "body": body}, token), "send")["event_id"]


def sliding(conn, token, body, query=""):
    return must(conn.req("POST", SLIDING + ("?" + query if query else ""), body, token), "sliding sync")


def parked_growth(a, start_one, count):
    """Parks `count` long-polls (start_one(conn) blocks until answered) and
    returns (RSS growth KiB or None, the list the answers land in)."""
    before = rss_kib(a.pid) if a.pid else None
    results, lock = [], threading.Lock()

    def run():
        conn = Conn(a.base_url, timeout=120)
        r = start_one(conn)
        with lock:
            results.append((r, time.perf_counter()))

    threads = [threading.Thread(target=run, daemon=True) for _ in range(count)]
    for t in threads:
        t.start()
    time.sleep(3)
    after = rss_kib(a.pid) if a.pid else None
    with lock:
        if results:
            sys.exit(f"sliding.py: {len(results)} parked requests returned before the wake")
    growth = (after - before) if before is not None and after is not None else None
    return growth, threads, results


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base-url", default="http://127.0.0.1:8008")
    p.add_argument("--pid", type=int)
    p.add_argument("--rooms", type=int, default=500)
    p.add_argument("--trials", type=int, default=9)
    p.add_argument("--wake-trials", type=int, default=100)
    p.add_argument("--park-delay", type=float, default=0.2)
    p.add_argument("--parked", type=int, default=1000)
    a = p.parse_args()
    run = uuid.uuid4().hex[:8]
    out = {}
    c = Conn(a.base_url)

    # First sliding sync of a user in many rooms.
    tu = benchlib.register(c, f"su{run}", "bench-su")
    for r in range(a.rooms):
        rid = must(c.req("POST", API + "/createRoom", {"preset": "private_chat", "name": f"room {r}"}, tu),
                   "createRoom")["room_id"]
        send(c, tu, urllib.parse.quote(rid), f"h{run}{r}", f"hello {r}")
    times = []
    for i in range(a.trials):
        body = dict(LIST, conn_id=f"first{i}")
        t0 = time.perf_counter()
        answer = sliding(c, tu, body)
        times.append((time.perf_counter() - t0) * 1000)
        if answer["lists"]["all"]["count"] != a.rooms or len(answer["rooms"]) != min(20, a.rooms):
            sys.exit(f"sliding.py: first sync: count {answer['lists']['all']['count']}, {len(answer['rooms'])} rooms")
    out["rooms"] = a.rooms
    out["first_ms_p50"] = round(statistics.median(times), 2)
    out["first_ms_min"] = round(min(times), 2)
    out["first_ms_max"] = round(max(times), 2)

    # Wake latency.
    ta = benchlib.register(c, f"sa{run}", "bench-sa")
    tb = benchlib.register(c, f"sb{run}", "bench-sb")
    room = must(c.req("POST", API + "/createRoom", {"preset": "public_chat"}, ta), "createRoom")["room_id"]
    room_q = urllib.parse.quote(room)
    must(c.req("POST", f"{API}/rooms/{room_q}/join", {}, tb), "join")
    cb = Conn(a.base_url)
    pos = sliding(cb, tb, LIST)["pos"]
    lat = []
    for i in range(a.wake_trials):
        got = {}

        def park():
            got["r"] = cb.req("POST", f"{SLIDING}?pos={pos}&timeout=30000", LIST, tb)
            got["t"] = time.perf_counter()

        th = threading.Thread(target=park)
        th.start()
        time.sleep(a.park_delay)
        send(c, ta, room_q, f"wake{run}{i}", f"wake {i}")
        sent = time.perf_counter()
        th.join(60)
        body = must(got["r"], "parked sliding sync")
        if room not in body["rooms"]:
            sys.exit(f"sliding.py: woken without the room: {body}")
        pos = body["pos"]
        lat.append((got["t"] - sent) * 1000)
    out["wake_ms_p50"] = round(statistics.median(lat), 3)
    out["wake_ms_p99"] = round(pct(lat, 0.99), 3)

    # Parked /sync, then parked sliding syncs: what each costs.
    since = must(c.req("GET", f"{API}/sync", None, tb), "sync")["next_batch"]
    growth, threads, results = parked_growth(
        a, lambda conn: conn.req("GET", f"{API}/sync?since={since}&timeout=60000", None, tb), a.parked)
    send(c, ta, room_q, f"fan1{run}", "everyone wake")
    for t in threads:
        t.join(120)
    out["parked"] = a.parked
    out["parked_sync_woken_ok"] = sum(1 for (s, _), _ in results if s == 200)
    out["parked_sync_rss_growth_mib"] = round(growth / 1024, 1) if growth is not None else None
    pos = sliding(c, tb, LIST, f"pos={pos}&timeout=0")["pos"]
    growth, threads, results = parked_growth(
        a, lambda conn: conn.req("POST", f"{SLIDING}?pos={pos}&timeout=60000", LIST, tb), a.parked)
    t0 = time.perf_counter()
    send(c, ta, room_q, f"fan2{run}", "everyone wake again")
    for t in threads:
        t.join(120)
    out["parked_sliding_woken_ok"] = sum(1 for (s, _), _ in results if s == 200)
    out["parked_sliding_all_woken_s"] = round(max(t for _, t in results) - t0, 3) if results else None
    out["parked_sliding_rss_growth_mib"] = round(growth / 1024, 1) if growth is not None else None
    print(json.dumps(out))


if __name__ == "__main__":
    main()
