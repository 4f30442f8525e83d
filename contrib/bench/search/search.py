#!/usr/bin/env python3
"""Server-side search benchmark (POST /search, room_events; standard library only).

Starts a fresh Hearth (--bin) on a temporary database, fills it through the
real send path (PUT /send, SENDERS users over keep-alive connections, all
members of ROOMS rooms), then times QUERIES searches of each kind, one at
a time, as a user who is in every room:

    common/rank, common/recent   words in a large share of the messages
    rare/rank,   rare/recent     words in a handful of messages
    two-word/rank                a common word AND a mid-frequency word

Message text is 6 to 14 words drawn from a Zipf-like vocabulary (fixed
seed), so word frequencies look like chat. Prints one JSON line with fill
time, database size and p50/p90/max latency (ms) for each kind.

    contrib/bench/search/search.py --bin target/release/hearth --messages 100000
"""

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import benchlib  # noqa: E402
from benchlib import API, Conn  # noqa: E402

VOCABULARY = 20000
COMMON = ["the", "and", "meeting", "today", "yes", "ok", "lunch", "deploy", "think", "good"]


def must(status, body, what):
    if status != 200:
        sys.exit(f"search.py: {what}: HTTP {status}: {body}")
    return body


def vocabulary(rng):
    """COMMON words first, then made-up words; weights ~ 1/rank."""
    words = COMMON + [f"w{i}x{rng.randrange(10**6)}" for i in range(VOCABULARY - len(COMMON))]
    weights = [1.0 / (r + 1) for r in range(len(words))]
    return words, weights


def start(binary, data, port):
    env = dict(os.environ, HEARTH_RATE_LIMIT_PER_SECOND="100000", HEARTH_RATE_LIMIT_BURST="100000")
    log = open(os.path.join(data, "server.log"), "w")
    proc = subprocess.Popen(
        [binary, "serve", "--listen", f"127.0.0.1:{port}", "--database", os.path.join(data, "hearth.db"),
         "--registration", "open", "--log-level", "warn"], env=env, stderr=log, stdout=log)
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            if Conn(base, 1.0).req("GET", "/_matrix/client/versions")[0] == 200:
                return proc, base
        except OSError:
            pass
        time.sleep(0.05)
    proc.kill()
    sys.exit("search.py: the server did not start; see " + log.name)


def fill(base, tokens, rooms, messages, texts, max_seconds):
    """Sends `messages` texts round-robin over the rooms, one thread per sender."""
    deadline = time.monotonic() + max_seconds
    errors = []

    def sender(i):
        c = Conn(base)
        for n in range(i, messages, len(tokens)):
            if time.monotonic() > deadline:
                errors.append("fill: over --max-seconds")
                return
            room = urllib.parse.quote(rooms[n % len(rooms)])
            st, r = c.req("PUT", f"{API}/rooms/{room}/send/m.room.message/f{n}",
                          {"msgtype": "m.text", "body": texts[n]}, tokens[i])
            if st != 200:
                errors.append(f"send: HTTP {st}: {r}")
                return

    threads = [threading.Thread(target=sender, args=(i,)) for i in range(len(tokens))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        sys.exit("search.py: " + errors[0])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin", default="target/release/hearth")
    p.add_argument("--port", type=int, default=18449)
    p.add_argument("--messages", type=int, default=100000)
    p.add_argument("--rooms", type=int, default=20)
    p.add_argument("--senders", type=int, default=8)
    p.add_argument("--queries", type=int, default=250, help="timed queries of each kind")
    p.add_argument("--limit", type=int, default=10, help="results per search (filter.limit)")
    p.add_argument("--max-seconds", type=float, default=600.0, help="limit for the fill")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    a = p.parse_args()

    rng = random.Random(19)
    words, weights = vocabulary(rng)
    texts = [" ".join(rng.choices(words, weights, k=rng.randint(6, 14))) for _ in range(a.messages)]
    freq = {}
    for t in texts:
        for w in set(t.split()):
            freq[w] = freq.get(w, 0) + 1
    common = COMMON
    rare = [w for w, n in freq.items() if 2 <= n <= 10][:a.queries] or [words[-1]]
    mid = [w for w, n in freq.items() if 50 <= n <= 500][:50] or common

    data = tempfile.mkdtemp(prefix="hearth-search-bench-")
    proc, base = start(a.bin, data, a.port)
    try:
        run = uuid.uuid4().hex[:6]
        setup = Conn(base)
        tokens = [benchlib.register(setup, f"s{run}u{i}", "bench-password") for i in range(a.senders)]
        rooms = []
        for _ in range(a.rooms):
            r = must(*setup.req("POST", API + "/createRoom", {"preset": "public_chat"}, tokens[0]), "createRoom")
            rooms.append(r["room_id"])
            for t in tokens[1:]:
                must(*setup.req("POST", f"{API}/rooms/{urllib.parse.quote(r['room_id'])}/join", {}, t), "join")
        t0 = time.monotonic()
        fill(base, tokens, rooms, a.messages, texts, a.max_seconds)
        fill_s = time.monotonic() - t0
        db_bytes = sum(os.path.getsize(os.path.join(data, f)) for f in os.listdir(data) if f.startswith("hearth.db"))

        c = Conn(base)
        searcher = tokens[0]

        def one(term, order):
            body = {"search_categories": {"room_events": {
                "search_term": term, "order_by": order, "filter": {"limit": a.limit}}}}
            t = time.perf_counter()
            st, r = c.req("POST", API + "/search", body, searcher)
            ms = (time.perf_counter() - t) * 1000
            must(st, r, "search " + term)
            return ms, r["search_categories"]["room_events"]

        kinds = {
            "common/rank": [(common[i % len(common)], "rank") for i in range(a.queries)],
            "common/recent": [(common[i % len(common)], "recent") for i in range(a.queries)],
            "rare/rank": [(rare[i % len(rare)], "rank") for i in range(a.queries)],
            "rare/recent": [(rare[i % len(rare)], "recent") for i in range(a.queries)],
            "two-word/rank": [(f"{common[i % len(common)]} {mid[i % len(mid)]}", "rank") for i in range(a.queries)],
        }
        for term, order in kinds["common/rank"][:20]:  # warm the page cache
            one(term, order)
        out = {"bench": "search", "messages": a.messages, "rooms": a.rooms, "fill_s": round(fill_s, 1),
               "fill_msg_per_s": round(a.messages / fill_s), "db_mib": round(db_bytes / 2**20, 1),
               "common_share": round(freq.get(common[0], 0) / a.messages, 3)}
        for kind, queries in kinds.items():
            times, counts = [], []
            for term, order in queries:
                ms, r = one(term, order)
                times.append(ms)
                counts.append(r["count"])
            out[kind] = {"p50_ms": round(benchlib.pct(times, 0.5), 2), "p90_ms": round(benchlib.pct(times, 0.9), 2),
                         "max_ms": round(max(times), 2), "median_count": sorted(counts)[len(counts) // 2]}
        out["server_rss_kib"] = benchlib.rss_kib(proc.pid)
        print(json.dumps(out))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if a.keep:
            print("kept " + data, file=sys.stderr)
        else:
            shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
