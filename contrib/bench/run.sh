#!/usr/bin/env bash
# Runs one of the benchmarks against a fresh release build of Hearth on
# loopback (open registration, rate limits raised), then stops the server.
#
#   contrib/bench/run.sh send      [send.py options]    message sends, 8 senders
#   contrib/bench/run.sh sync      [sync.py options]    wake latency, parked polls, initial sync
#   contrib/bench/run.sh flood     [flood.py options]   idle + slowloris flood, latency, RSS, wake
#   contrib/bench/run.sh sliding   [sliding.py options] first sliding sync, wake, parked (MSC4186)
#   contrib/bench/run.sh mxbench   [mxbench options]    ../shared/bench/mxbench.py, if present
#   contrib/bench/run.sh push      [push.py options]    pushes/s to a local gateway (push.py
#                                                       starts its own servers on /dev/shm)
#
# HEARTH_BIN names another binary to measure (e.g. an older build) instead
# of building this checkout.
# Prints the benchmark's JSON line(s); the server log is kept in $DATA/server.log
# when KEEP=1.
set -euo pipefail
cd "$(dirname "$0")/../.."
what=${1:?usage: run.sh send|sync|sliding|flood|mxbench|push [options]}
shift
PORT=${PORT:-18448}
BIN=${HEARTH_BIN:-target/release/hearth}
[ -n "${HEARTH_BIN:-}" ] || cargo build --release --quiet
if [ "$what" = push ]; then
  # A fresh server per run, started by push.py itself (--bin to compare).
  exec python3 contrib/bench/push.py --bin "$BIN" "$@"
fi
DATA=$(mktemp -d)
cleanup() {
  kill -TERM "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
  [ "${KEEP:-0}" = 1 ] || rm -rf "$DATA"
}
trap cleanup EXIT
# Parked long-polls and floods each hold a connection; allow as many
# descriptors as the system lets us.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
HEARTH_RATE_LIMIT_PER_SECOND=100000 HEARTH_RATE_LIMIT_BURST=100000 \
  HEARTH_MAX_CONNECTIONS=${HEARTH_MAX_CONNECTIONS:-16384} HEARTH_MAX_PARKED_REQUESTS=${HEARTH_MAX_PARKED_REQUESTS:-3000} \
  "$BIN" serve --listen "127.0.0.1:$PORT" --database "$DATA/hearth.db" \
  --registration open --log-level warn 2>"$DATA/server.log" &
PID=$!
for _ in $(seq 100); do
  curl -fsS "http://127.0.0.1:$PORT/_matrix/client/versions" >/dev/null 2>&1 && break
  sleep 0.1
done
BASE="http://127.0.0.1:$PORT"
case "$what" in
  send) python3 contrib/bench/send.py --base-url "$BASE" "$@" ;;
  sync) python3 contrib/bench/sync.py --base-url "$BASE" --pid "$PID" "$@" ;;
  sliding) python3 contrib/bench/sliding.py --base-url "$BASE" --pid "$PID" "$@" ;;
  flood) python3 contrib/bench/flood.py --base-url "$BASE" --pid "$PID" "$@" ;;
  mxbench) python3 "${MXBENCH:-../shared/bench/mxbench.py}" --base-url "$BASE" --pid "$PID" \
             --data-dir "$DATA" --label hearth --json-out "${OUT:-/tmp/hearth-mxbench.json}" "$@" ;;
  *) echo "unknown benchmark: $what" >&2; exit 2 ;;
esac
