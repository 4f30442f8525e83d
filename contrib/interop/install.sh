#!/usr/bin/env bash
# Installs the Synapse of the cross-server tests (tests/common/synapse.rs)
# from PyPI into a virtualenv kept between runs:
#   ${HEARTH_INTEROP_DIR:-$HOME/.cache/hearth-interop}/venv
# Wheels only (nothing compiled), every dependency pinned by
# constraints.txt. Quick (well under a second) when that venv already holds
# this version with these constraints; otherwise it is rebuilt from
# scratch (about a minute, 250 MB). Concurrent runs wait for each other.
# Installs python3-venv with apt-get (needs root) if `python3 -m venv`
# cannot work. HEARTH_INTEROP_PYTHON names another interpreter (3.10+).
# Prints the venv's path last; exits non-zero if Synapse is not usable.
set -euo pipefail

SYNAPSE_VERSION=1.163.2

here="$(cd "$(dirname "$0")" && pwd)"
root="${HEARTH_INTEROP_DIR:-$HOME/.cache/hearth-interop}"
venv="$root/venv"
python="${HEARTH_INTEROP_PYTHON:-python3}"
constraints="$here/constraints.txt"
# What the venv must have been built from: the version and the pins.
want="synapse $SYNAPSE_VERSION constraints $(sha256sum "$constraints" | cut -d' ' -f1)"
stamp="$venv/hearth-interop.stamp"

ready() {
    [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
        && "$venv/bin/python" -c "import sys, synapse; sys.exit(synapse.__version__ != '$SYNAPSE_VERSION')" 2>/dev/null
}

mkdir -p "$root"
# One installer at a time (two test binaries may start together).
exec 9>"$root/install.lock"
flock 9

if ready; then
    echo "$venv"
    exit 0
fi

if ! command -v "$python" >/dev/null || ! "$python" -c 'import venv, ensurepip' 2>/dev/null; then
    echo "interop: $python cannot make a venv; installing python3-venv" >&2
    if command -v apt-get >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv >/dev/null
    fi
    "$python" -c 'import venv, ensurepip' || {
        echo "interop: no usable python3 with venv and ensurepip" >&2
        exit 1
    }
fi
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' || {
    echo "interop: Synapse $SYNAPSE_VERSION needs Python 3.10 or later, $python is $("$python" --version)" >&2
    exit 1
}

echo "interop: installing matrix-synapse $SYNAPSE_VERSION into $venv" >&2
start=$(date +%s)
rm -rf "$venv"
"$python" -m venv "$venv"
PIP_DISABLE_PIP_VERSION_CHECK=1 "$venv/bin/python" -m pip install --quiet --only-binary :all: \
    -c "$constraints" "matrix-synapse==$SYNAPSE_VERSION"
# Written last: a venv without it is incomplete and is rebuilt next time.
echo "$want" >"$stamp"
"$venv/bin/python" -c 'import synapse' && ready || {
    echo "interop: Synapse was installed but does not import as $SYNAPSE_VERSION" >&2
    exit 1
}
echo "interop: installed in $(($(date +%s) - start)) s" >&2
echo "$venv"
