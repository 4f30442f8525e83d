#!/usr/bin/env python3
"""Message-send benchmark for any Matrix homeserver (standard library only).

Registers SENDERS users (open registration, m.login.dummy), creates one room,
joins everyone, then each sender sends its share of MESSAGES over its own
keep-alive connection, all at once. Prints throughput and latency
percentiles, and checks that /messages returns every message exactly once.

    contrib/bench/send.py --base-url http://127.0.0.1:8008 --senders 8 --messages 4000
    contrib/bench/send.py ... --members 100   # 100 more local users in the room

Every loop is bounded in count and time; it talks only to --base-url.
Start Hearth for it with open registration and the rate limits raised:

    HEARTH_RATE_LIMIT_PER_SECOND=100000 HEARTH_RATE_LIMIT_BURST=100000 \\
      target/release/hearth serve --registration open --database /tmp/bench.db
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
from benchlib import API, Conn


def must(status, body, what, want=200):
    if status != want:
        sys.exit(f"send.py: {what}: HTTP {status}: {body}")
    return body


def register(conn, name):
    return benchlib.register(conn, name, "bench-password-" + name)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base-url", default="http://127.0.0.1:8008")
    p.add_argument("--senders", type=int, default=8)
    p.add_argument("--messages", type=int, default=4000, help="messages in total")
    p.add_argument("--warmup", type=int, default=200, help="unmeasured messages sent first")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    p.add_argument("--max-seconds", type=float, default=300.0, help="limit for the whole send phase")
    p.add_argument("--members", type=int, default=0,
                   help="extra local users who join the room and only listen (push rules run for each)")
    a = p.parse_args()

    run = uuid.uuid4().hex[:8]
    setup = Conn(a.base_url, a.timeout)
    tokens = [register(setup, f"bench{run}s{i}") for i in range(a.senders)]
    room = must(*setup.req("POST", API + "/createRoom", {"preset": "public_chat"}, tokens[0]), "createRoom")["room_id"]
    room_q = urllib.parse.quote(room)
    for t in tokens[1:]:
        must(*setup.req("POST", f"{API}/rooms/{room_q}/join", {}, t), "join")
    for i in range(a.members):
        t = register(setup, f"bench{run}m{i}")
        must(*setup.req("POST", f"{API}/rooms/{room_q}/join", {}, t), "join")

    for i in range(a.warmup):
        must(*setup.req("PUT", f"{API}/rooms/{room_q}/send/m.room.message/w{i}",
                        {"msgtype": "m.text", "body": "warmup"}, tokens[i % a.senders]), "warmup send")

    per = a.messages // a.senders
    latencies = [[] for _ in range(a.senders)]
    errors = []
    deadline = time.monotonic() + a.max_seconds
    start_gate = threading.Barrier(a.senders + 1)

    def sender(i):
        c = Conn(a.base_url, a.timeout)
        start_gate.wait()
        for n in range(per):
            if time.monotonic() > deadline:
                errors.append("time limit reached")
                return
            t0 = time.perf_counter()
            status, body = c.req("PUT", f"{API}/rooms/{room_q}/send/m.room.message/{run}-{i}-{n}",
                                 {"msgtype": "m.text", "body": f"message {i}-{n}"}, tokens[i])
            latencies[i].append(time.perf_counter() - t0)
            if status != 200:
                errors.append(f"HTTP {status}: {body}")
                return

    threads = [threading.Thread(target=sender, args=(i,)) for i in range(a.senders)]
    for t in threads:
        t.start()
    start_gate.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        sys.exit(f"send.py: {errors[0]}")

    # Every message is in the room exactly once.
    seen = set()
    frm = None
    for _ in range(10_000):
        path = f"{API}/rooms/{room_q}/messages?dir=b&limit=1000" + (f"&from={urllib.parse.quote(frm)}" if frm else "")
        body = must(*setup.req("GET", path, None, tokens[0]), "messages")
        for e in body.get("chunk", []):
            b = e.get("content", {}).get("body", "")
            if b.startswith("message "):
                if b in seen:
                    sys.exit(f"send.py: duplicate message {b}")
                seen.add(b)
        frm = body.get("end")
        if not frm or not body.get("chunk"):
            break
    sent = per * a.senders
    if len(seen) != sent:
        sys.exit(f"send.py: sent {sent} messages, /messages returned {len(seen)}")

    all_ms = sorted(x * 1000 for l in latencies for x in l)

    def pct(q):
        return all_ms[min(len(all_ms) - 1, int(q * len(all_ms)))]

    result = {
        "senders": a.senders,
        "members": a.senders + a.members,
        "messages": sent,
        "wall_s": round(wall, 3),
        "msgs_per_s": round(sent / wall, 1),
        "latency_ms_p50": round(statistics.median(all_ms), 3),
        "latency_ms_p95": round(pct(0.95), 3),
        "latency_ms_p99": round(pct(0.99), 3),
        "latency_ms_max": round(all_ms[-1], 3),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
