#!/usr/bin/env bash
# Type-checks the whole workspace for macOS (x86_64-apple-darwin) with
# clippy and -D warnings, so that code behind cfg(target_os = "macos")
# and cfg(not(target_os = "linux")) keeps compiling although no macOS
# machine runs it here. Installs the target's standard library with
# rustup when missing.
#
# fuser's build script asks pkg-config for macFUSE's libfuse ("fuse")
# even when nothing is linked; a stand-in fuse.pc under target/ answers
# it. `cargo clippy` never links, so the stand-in cannot end up in a
# binary.
set -euo pipefail
cd "$(dirname "$0")/../.."
target=x86_64-apple-darwin
if ! rustup target list --installed | grep -qx "$target"; then
    echo "installing the $target standard library (rustup)"
    rustup target add "$target"
fi
pc="$PWD/target/macos-check"
mkdir -p "$pc"
cat >"$pc/fuse.pc" <<'PC'
Name: fuse
Description: stand-in for macFUSE's libfuse, for type-checking only
Version: 2.9.9
Libs: -lfuse
Cflags:
PC
PKG_CONFIG_ALLOW_CROSS=1 PKG_CONFIG_PATH="$pc" \
    cargo clippy --quiet --target "$target" --workspace --all-targets --locked -- -D warnings
echo "macOS ($target): type-checks, no warnings"
