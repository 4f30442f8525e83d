#!/usr/bin/env bash
# Runs ../shared/bench/mxbench.py against a fresh release build of Hearth on
# loopback, with open registration and the rate limits raised (as mxbench
# requires), then stops the server. Extra arguments go to mxbench, e.g.
#   contrib/bench/mxbench.sh --preset tiny
# Results: $OUT (default /tmp/hearth-mxbench.json); compare runs with
#   python3 ../shared/bench/mxbench.py --compare a.json b.json --markdown
set -euo pipefail
cd "$(dirname "$0")/../.."
MXBENCH=${MXBENCH:-../shared/bench/mxbench.py}
OUT=${OUT:-/tmp/hearth-mxbench.json}
PORT=${PORT:-18448}
cargo build --release --quiet
DATA=$(mktemp -d)
trap 'kill -TERM "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; rm -rf "$DATA"' EXIT
HEARTH_RATE_LIMIT_PER_SECOND=100000 HEARTH_RATE_LIMIT_BURST=100000 \
  target/release/hearth serve --listen "127.0.0.1:$PORT" --database "$DATA/hearth.db" \
  --registration open --log-level warn 2>"$DATA/server.log" &
PID=$!
for _ in $(seq 100); do
  curl -fsS "http://127.0.0.1:$PORT/_matrix/client/versions" >/dev/null 2>&1 && break
  sleep 0.1
done
python3 "$MXBENCH" --base-url "http://127.0.0.1:$PORT" --pid "$PID" --data-dir "$DATA" \
  --label hearth --json-out "$OUT" "$@"
