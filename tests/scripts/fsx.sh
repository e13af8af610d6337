#!/usr/bin/env bash
# Runs fsx (the crates.io rewrite) on a file in DIR with every operation it
# supports on Linux: reads and writes through pread/pwrite and mmap,
# truncate, close/reopen, msync invalidation, fsync, fdatasync,
# posix_fallocate, hole punching, sendfile, posix_fadvise and
# copy_file_range, on files up to FSX_FLEN bytes (default 4 MiB). The seed
# is printed, so that a failure can be replayed with FSX_SEED. Prints
# "fsx: 1 passed, 0 failed".
#
# FSX_MMAP=0 leaves out mapped reads and writes: fsx leaks its maps, and
# every leaked map keeps an old handle of the file open, which keeps
# passthrough=on from ever passing the file through.
#
# fsx 0.3.2 leaks a memory mapping every few operations, and every msync
# or truncate then walks all the file's leaked maps: one long run grows
# quadratic (100,000 operations across tiers took seven minutes, almost all
# of it in the kernel's rmap walk). The operations therefore run in
# processes of at most FSX_CHUNK (default 10000), each with its own seed
# (SEED, SEED+1, ...) and a fresh file.
#
# Usage: fsx.sh DIR [OPERATIONS]   (default 100000)
set -euo pipefail
dir=${1:?usage: fsx.sh DIR [OPERATIONS]}
ops=${2:-100000}
here=$(cd "$(dirname "$0")" && pwd)
tools="$here/../../target/tools/bin"
seed=${FSX_SEED:-$(( (RANDOM << 15) | RANDOM ))}
flen=${FSX_FLEN:-4194304}
mmap_weight=10
if [ "${FSX_MMAP:-1}" = 0 ]; then mmap_weight=0; fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

chunk=${FSX_CHUNK:-10000}
per_process=$((ops < chunk ? ops : chunk))

# The leaked maps (measured on kernel tmpfs as well) would also end a long
# process by vm.max_map_count (65530), not by a file-system bug. Raise it
# for the run, as root, and put it back.
if [ "$per_process" -gt 200000 ] && [ -w /proc/sys/vm/max_map_count ]; then
    old_maps=$(cat /proc/sys/vm/max_map_count)
    echo 4194304 > /proc/sys/vm/max_map_count
    trap 'rm -rf "$work"; echo "$old_maps" > /proc/sys/vm/max_map_count' EXIT
fi

cat > "$work/fsx.toml" <<TOML
flen = $flen
[opsize]
# fsx's default minimum is 0, and a zero-length posix_fallocate fails with
# EINVAL on every file system (kernel tmpfs too), which fsx reports as a
# failure: seed 165441797 hit it at operation 40042.
min = 1
max = 262144
[weights]
close_open = ${FSX_CLOSE_OPEN:-1}
read = 10
write = 10
mapread = $mmap_weight
mapwrite = $mmap_weight
invalidate = 1
truncate = 2
fsync = 1
fdatasync = 1
posix_fallocate = 2
punch_hole = 2
sendfile = 2
posix_fadvise = 1
copy_file_range = 2
TOML

echo "fsx: $ops operations in $dir, seed $seed, files up to $flen bytes, $per_process operations per process"
left=$ops
s=$seed
while [ "$left" -gt 0 ]; do
    n=$((left < chunk ? left : chunk))
    if ! "$tools/fsx" -f "$work/fsx.toml" -N "$n" -S "$s" -P "$work" "$dir/fsx.testfile" > "$work/log" 2>&1; then
        tail -40 "$work/log"
        echo "fsx: 0 passed, 1 failed (replay with FSX_SEED=$s FSX_CHUNK=$chunk fsx.sh DIR $n)"
        exit 1
    fi
    rm -f "$dir/fsx.testfile"
    left=$((left - n))
    s=$((s + 1))
done
echo "fsx: 1 passed, 0 failed"
