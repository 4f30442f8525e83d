"""What the benchmark scripts share: a keep-alive JSON client and
registration through the m.login.dummy flow (standard library only)."""

import http.client
import json
import sys
import urllib.parse

API = "/_matrix/client/v3"


class Conn:
    """One keep-alive HTTP connection; a broken connection is reopened once."""

    def __init__(self, base, timeout=60.0):
        u = urllib.parse.urlsplit(base)
        self.host, self.port, self.timeout = u.hostname, u.port or 80, timeout
        self.c = http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def req(self, method, path, body=None, token=None):
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = "Bearer " + token
        data = json.dumps(body).encode() if body is not None else None
        for attempt in range(2):
            try:
                self.c.request(method, path, body=data, headers=headers)
                r = self.c.getresponse()
                raw = r.read()
                return r.status, (json.loads(raw) if raw else {})
            except (http.client.HTTPException, OSError):
                self.c.close()
                self.c = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
                if attempt:
                    raise
        raise RuntimeError("unreachable")


def register(conn, name, password):
    """Registers `name` (open registration) and returns its access token."""
    body = {"username": name, "password": password}
    status, r = conn.req("POST", API + "/register", body)
    if status == 401:
        body["auth"] = {"type": "m.login.dummy", "session": r.get("session")}
        status, r = conn.req("POST", API + "/register", body)
    if status != 200:
        sys.exit(f"register {name}: HTTP {status}: {r}")
    return r["access_token"]


def pct(values, q):
    """The q-quantile of `values` (nearest rank); None when empty."""
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))] if v else None


def rss_kib(pid):
    """A process's resident memory in KiB from /proc; None if unknown."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, TypeError):
        return None
    return None
