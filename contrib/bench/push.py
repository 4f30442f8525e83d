#!/usr/bin/env python3
"""Push delivery benchmark: pushes per second from Hearth to a local gateway
(standard library only).

For each run: starts Hearth on a fresh database under /dev/shm
(TMPDIR=/dev/shm), a push gateway on 127.0.0.1 that answers
{"rejected":[]} over HTTP/1.1 keep-alive, registers a sender and a
recipient in one room, gives the recipient a pusher at the gateway, and
sends MESSAGES messages while the gateway holds its answers (so the
outbox fills); then the gateway opens and the time until every push
arrived gives deliveries per second. Reports the median, min and max over
RUNS runs, and the TCP connections the gateway accepted per run.

    contrib/bench/push.py                                 # HEARTH_BIN or target/release/hearth
    contrib/bench/push.py --bin before=/work/wt-before/target/release/hearth \\
                          --bin after=target/release/hearth --runs 5

With several --bin, runs alternate between them (ABAB...), so a noisy
machine disturbs each alike. Every wait is bounded; it talks only to the
servers it started.
"""

import argparse
import http.server
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

import benchlib
from benchlib import API, Conn


class Gateway:
    """A push gateway that answers only once opened, counting pushes and connections."""

    def __init__(self):
        self.gate = threading.Event()
        self.lock = threading.Lock()
        self.events = []
        self.times = []
        self.connections = 0
        gw = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body leave in one segment: without this a kept
            # connection waits out the client's delayed ACK (~40 ms) per push.
            disable_nagle_algorithm = True

            def setup(self):
                super().setup()
                with gw.lock:
                    gw.connections += 1

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                gw.gate.wait(120)
                try:
                    event_id = json.loads(body)["notification"]["event_id"]
                except (ValueError, KeyError, TypeError):
                    event_id = None
                with gw.lock:
                    gw.events.append(event_id)
                    gw.times.append(time.perf_counter())
                answer = b'{"rejected":[]}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self):
        return f"http://127.0.0.1:{self.port}/_matrix/push/v1/notify"

    def close(self):
        self.gate.set()
        self.server.shutdown()
        self.server.server_close()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def must(status, body, what):
    if status != 200:
        sys.exit(f"push.py: {what}: HTTP {status}: {body}")
    return body


def one_run(binary, messages, fmt, timeout):
    data = tempfile.mkdtemp(prefix="hearth-push-bench-", dir="/dev/shm")
    port = free_port()
    env = dict(os.environ, TMPDIR="/dev/shm",
               HEARTH_RATE_LIMIT_PER_SECOND="100000", HEARTH_RATE_LIMIT_BURST="100000",
               # The old name for the older binaries, the new one for the newer.
               HEARTH_PUSH_ALLOW_PRIVATE="1", HEARTH_OUTBOUND_ALLOW_PRIVATE="true")
    log = open(os.path.join(data, "server.log"), "w")
    proc = subprocess.Popen([binary, "serve", "--listen", f"127.0.0.1:{port}", "--database",
                             os.path.join(data, "hearth.db"), "--registration", "open", "--log-level", "warn"],
                            env=env, stdout=subprocess.DEVNULL, stderr=log)
    gw = Gateway()
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                if Conn(base, 1).req("GET", "/_matrix/client/versions")[0] == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None:
                sys.exit(f"push.py: {binary} exited; see {data}/server.log")
            time.sleep(0.05)
        c = Conn(base, timeout)
        alice = benchlib.register(c, "alice", "bench-password-alice")
        bob = benchlib.register(c, "bob", "bench-password-bob")
        room = must(*c.req("POST", API + "/createRoom", {"preset": "private_chat"}, alice), "createRoom")["room_id"]
        room_q = urllib.parse.quote(room)
        must(*c.req("POST", f"{API}/rooms/{room_q}/invite", {"user_id": "@bob:localhost"}, alice), "invite")
        must(*c.req("POST", f"{API}/rooms/{room_q}/join", {}, bob), "join")
        pusher_data = {"url": gw.url()}
        if fmt:
            pusher_data["format"] = fmt
        must(*c.req("POST", API + "/pushers/set", {
            "kind": "http", "app_id": "org.example.bench", "pushkey": "BENCHKEY",
            "app_display_name": "Bench", "device_display_name": "Bench", "lang": "en",
            "data": pusher_data}, bob), "pushers/set")
        # The invite and join may have pushed: count only what follows.
        t_send = time.perf_counter()
        sent = set()
        for n in range(messages):
            body = must(*c.req("PUT", f"{API}/rooms/{room_q}/send/m.room.message/m{n}",
                               {"msgtype": "m.text", "body": f"message {n}"}, alice), "send")
            sent.add(body["event_id"])
        send_s = time.perf_counter() - t_send
        with gw.lock:
            before_open = len(gw.events)
        t_open = time.perf_counter()
        gw.gate.set()
        deadline = time.monotonic() + timeout
        while True:
            with gw.lock:
                got = set(e for e in gw.events if e in sent)
                last = gw.times[-1] if gw.times else t_open
            if len(got) == len(sent):
                break
            if time.monotonic() > deadline:
                sys.exit(f"push.py: {binary}: {len(got)} of {len(sent)} pushes arrived in {timeout} s")
            time.sleep(0.005)
        drain_s = last - t_open
        with gw.lock:
            duplicates = sum(1 for e in gw.events if e in sent) - len(sent)
            connections = gw.connections
        return {
            "pushes": len(sent),
            "pushes_per_s": round(len(sent) / drain_s, 1),
            "drain_s": round(drain_s, 3),
            "send_msgs_per_s": round(messages / send_s, 1),
            "held_in_flight": before_open,
            "connections": connections,
            "duplicates": duplicates,
        }
    finally:
        gw.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        shutil.rmtree(data, ignore_errors=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin", action="append", default=[],
                   help="LABEL=PATH or PATH of a hearth binary; repeat to compare (default: $HEARTH_BIN "
                        "or target/release/hearth)")
    p.add_argument("--messages", type=int, default=2000, help="messages (and so pushes) per run")
    p.add_argument("--runs", type=int, default=5, help="runs per binary")
    p.add_argument("--format", default="", help="the pusher's data.format (e.g. event_id_only); default full")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds for a run's sends, and for its drain")
    a = p.parse_args()
    bins = a.bin or [os.environ.get("HEARTH_BIN") or "target/release/hearth"]
    labelled = [(b.split("=", 1) if "=" in b else (b, b)) for b in bins]
    results = {label: [] for label, _ in labelled}
    for _ in range(a.runs):
        for label, path in labelled:
            results[label].append(one_run(path, a.messages, a.format, a.timeout))
    for label, path in labelled:
        rates = [r["pushes_per_s"] for r in results[label]]
        print(json.dumps({
            "binary": label,
            "pushes_per_run": a.messages,
            "runs": a.runs,
            "pushes_per_s_median": round(statistics.median(rates), 1),
            "pushes_per_s_min": min(rates),
            "pushes_per_s_max": max(rates),
            "connections_per_run": sorted({r["connections"] for r in results[label]}),
            "duplicates": sum(r["duplicates"] for r in results[label]),
            "send_msgs_per_s_median": round(statistics.median(r["send_msgs_per_s"] for r in results[label]), 1),
            "rates": rates,
        }))


if __name__ == "__main__":
    main()
