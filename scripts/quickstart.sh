#!/usr/bin/env bash
# Sets up tmpfsd on a fresh machine and mounts ~/.fasttmp with the default
# options: installs fuse3 when it is missing (needed by users other than
# root), builds and installs the `tmpfsd` command into ~/.cargo/bin, and
# mounts. Safe to run again: an existing mount is left as it is.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v fusermount3 >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1; then
        sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        echo "installing fuse3"
        $sudo apt-get install -y -qq fuse3 >/dev/null || { $sudo apt-get update -qq && $sudo apt-get install -y -qq fuse3 >/dev/null; }
    else
        echo "fusermount3 is missing: install your distribution's fuse3 package" >&2
        [ "$(id -u)" -eq 0 ] || exit 1
    fi
fi

cargo install --quiet --locked --path cli
bin="${CARGO_HOME:-$HOME/.cargo}/bin/tmpfsd"
mnt="$HOME/.fasttmp"
mkdir -p "$mnt"
if "$bin" status "$mnt" >/dev/null 2>&1; then
    echo "$mnt is already a tmpfsd mount"
else
    "$bin" mount "$mnt"
    echo "mounted $mnt"
fi
"$bin" status "$mnt"
echo "point programs at it with: export TMPDIR=$mnt"
