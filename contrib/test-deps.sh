#!/usr/bin/env bash
# Installs what the tests need beyond the Rust toolchain, if missing:
# pebble (tests/acme.rs), qemu-user-static, musl-tools and
# gcc-aarch64-linux-gnu plus the rustup musl targets (tests/static_qemu.rs
# via contrib/build-static.sh). Quick when everything is already there; a
# failed install makes those tests fail, not skip. Needs root for apt-get.
# Also Node.js and the npm packages of tests/js (matrix-js-sdk, for
# tests/js_sdk.rs), from its package-lock.json; and the matrix-rust-sdk
# client of tests/msdk.rs (its own Cargo project and lock file, built into
# tests/msdk/target or HEARTH_MSDK_TARGET_DIR: 2 to 4 minutes cold).
# And Synapse, for the cross-server tests (contrib/interop/install.sh: a
# venv under HEARTH_INTEROP_DIR or ~/.cache/hearth-interop, under a minute
# cold).
set -uo pipefail
cd "$(dirname "$0")/.."
missing=()
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
command -v pebble >/dev/null || missing+=(pebble)
command -v qemu-aarch64-static >/dev/null || missing+=(qemu-user-static)
command -v musl-gcc >/dev/null || missing+=(musl-tools)
command -v aarch64-linux-gnu-gcc >/dev/null || missing+=(gcc-aarch64-linux-gnu)
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null \
        || echo "warning: could not install ${missing[*]}; the tests that need them will fail"
fi
installed_targets=$(rustup target list --installed)
for target in x86_64-unknown-linux-musl aarch64-unknown-linux-musl; do
    grep -qx "$target" <<<"$installed_targets" || rustup target add "$target" \
        || echo "warning: could not add the rustup target $target"
done
if [ ! -d tests/js/node_modules/matrix-js-sdk ]; then
    (cd tests/js && npm ci --no-audit --no-fund --loglevel=error) \
        || echo "warning: could not install tests/js's npm packages; tests/js_sdk.rs will fail"
fi
msdk_target="${HEARTH_MSDK_TARGET_DIR:-tests/msdk/target}"
CARGO_TARGET_DIR="$msdk_target" cargo build --locked --quiet --manifest-path tests/msdk/Cargo.toml \
    || echo "warning: could not build tests/msdk; tests/msdk.rs will fail"
contrib/interop/install.sh >/dev/null \
    || echo "warning: could not install Synapse (contrib/interop/install.sh); the interop tests will fail"
exit 0
