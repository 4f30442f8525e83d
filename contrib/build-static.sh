#!/usr/bin/env bash
# Builds static (musl) release binaries of hearth for small hardware.
#
#   contrib/build-static.sh [TARGET...]
#
# TARGET defaults to both x86_64-unknown-linux-musl and
# aarch64-unknown-linux-musl. Output: target/static/TARGET/release/hearth
# (override the directory with CARGO_TARGET_DIR).
#
# Needs (Debian): `rustup target add TARGET`, musl-tools (musl-gcc, for the
# bundled SQLite and ring on x86-64) and gcc-aarch64-linux-gnu (compiles
# the C parts and links for aarch64; Rust's musl targets bring their own
# libc, so the glibc cross compiler is only a compiler and linker driver).
# .ci/run installs all of it.
set -euo pipefail
cd "$(dirname "$0")/.."

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(x86_64-unknown-linux-musl aarch64-unknown-linux-musl)
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target/static}"
# SQLite from the bundled amalgamation with libsqlite3-sys's defaults,
# less the extensions Hearth never uses: FTS3 (search is FTS5), R*Tree and
# the dbstat table (~250 KB of the 10 MiB budget), and with the options
# SQLite's documentation recommends for an embedded build: no memory
# statistics (a mutex per allocation), no deprecated or shared-cache
# code, no progress callback, no loadable extensions, no expression depth
# counting, no STAT4 or column metadata (~90 KB). The tests run the
# static binary (tests/static_qemu.rs).
export LIBSQLITE3_FLAGS="-USQLITE_ENABLE_FTS3 -USQLITE_ENABLE_FTS3_PARENTHESIS -USQLITE_ENABLE_RTREE -USQLITE_ENABLE_DBSTAT_VTAB -DSQLITE_DEFAULT_MEMSTATUS=0 -DSQLITE_OMIT_DEPRECATED -DSQLITE_OMIT_SHARED_CACHE -DSQLITE_OMIT_PROGRESS_CALLBACK -DSQLITE_MAX_EXPR_DEPTH=0 -USQLITE_ENABLE_STAT4 -USQLITE_ENABLE_COLUMN_METADATA -USQLITE_ENABLE_LOAD_EXTENSION -DSQLITE_OMIT_LOAD_EXTENSION"

need() {
    command -v "$1" >/dev/null || { echo "build-static: $1 not found ($2)" >&2; exit 1; }
}

for target in "${targets[@]}"; do
    case "$target" in
        x86_64-unknown-linux-musl)
            need musl-gcc "apt-get install musl-tools"
            export CC_x86_64_unknown_linux_musl=musl-gcc
            # Linked by gold with identical code folding: same-bodied
            # monomorphisations of generic code kept once, ~260 KB off
            # (lld's folding took ~50 KB here). gold ships with binutils;
            # rustc warns that it is deprecated. tests/static_qemu.rs
            # runs the result.
            need ld.gold "apt-get install binutils"
            export CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_RUSTFLAGS="-C link-arg=-fuse-ld=gold -C link-arg=-Wl,--icf=all"
            ;;
        aarch64-unknown-linux-musl)
            need aarch64-linux-gnu-gcc "apt-get install gcc-aarch64-linux-gnu"
            export CC_aarch64_unknown_linux_musl=aarch64-linux-gnu-gcc
            export AR_aarch64_unknown_linux_musl=aarch64-linux-gnu-ar
            export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=aarch64-linux-gnu-gcc
            # glibc's headers rename open/pread/fcntl… to their *64 forms
            # when SQLite asks for large-file support; musl has no such
            # symbols. On a 64-bit target off_t is 64 bits anyway.
            export CFLAGS_aarch64_unknown_linux_musl="-DSQLITE_DISABLE_LFS"
            ;;
        *)
            echo "build-static: unknown target $target" >&2
            exit 2
            ;;
    esac
    if ! rustup target list --installed | grep -qx "$target"; then
        echo "build-static: run 'rustup target add $target' first" >&2
        exit 1
    fi
    # Hearth's own crate at opt-level "s" in the static build: 607 KB
    # smaller for +4-6 % instructions per request (callgrind, initial
    # sync and send; contrib/bench/RESULTS.md). The size is what a router's
    # flash pays; the ordinary release build keeps opt-level 3.
    cargo build --release --locked --target "$target" --bin hearth \
        --config 'profile.release.package.hearth.opt-level="s"'
    bin="$CARGO_TARGET_DIR/$target/release/hearth"
    echo "build-static: $bin $(stat -c %s "$bin") bytes"
done
