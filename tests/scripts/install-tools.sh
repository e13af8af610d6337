#!/usr/bin/env bash
# Installs what the test suite needs, idempotently, on a fresh Debian-like
# machine (run as root):
#   - fuse3 (fusermount3, for the unprivileged-mount test), libacl
#     (pjdfstest links against it) and btrfs-progs (a copy-on-write spill
#     disk for one mount test), from the distribution;
#   - /dev/fuse with mode 0666, as fuse3's udev rule sets it on a normal
#     system (machines without udev keep 0600, and no user could mount);
#   - the group and user "tests", which pjdfstest switches to (with
#     nobody/nogroup, which Debian has);
#   - pjdfstest and fsx from crates.io, pinned, into target/tools.
set -euo pipefail
cd "$(dirname "$0")/../.."
tools="$PWD/target/tools"

missing=()
command -v fusermount3 >/dev/null 2>&1 || missing+=(fuse3)
[ -e /usr/include/sys/acl.h ] || missing+=(libacl1-dev)
command -v mkfs.btrfs >/dev/null 2>&1 || missing+=(btrfs-progs)
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]}"
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
fi
echo "fuse3: ready ($(command -v fusermount3))"

if [ -e /dev/fuse ] && [ "$(stat -c %a /dev/fuse)" != 666 ]; then
    chmod 0666 /dev/fuse
fi

getent group tests >/dev/null || groupadd tests
getent passwd tests >/dev/null || useradd -g tests -M -s /usr/sbin/nologin tests

for tool in pjdfstest@0.2.2 fsx@0.3.2; do
    name=${tool%@*}
    if [ ! -x "$tools/bin/$name" ]; then
        echo "building $tool (once)"
        cargo install --locked --quiet --root "$tools" "$tool"
    fi
    echo "$name: ready ($tools/bin/$name)"
done
