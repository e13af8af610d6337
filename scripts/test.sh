#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs what the tests
# need (fuse3, btrfs-progs, pjdfstest, fsx), checks formatting and lints, runs the unit
# and mount tests, then CPython's file tests, pjdfstest and fsx against
# real tmpfsd mounts.
# Run it as root (pjdfstest switches users; the unprivileged-mount test
# creates an ordinary user). Ends with one line: "suites: N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

passed=0
failed=0
failures=()
run() {
    local name=$1
    shift
    local start=$SECONDS
    echo "==> $name"
    if "$@"; then
        passed=$((passed + 1))
        echo "==> $name: passed in $((SECONDS - start)) s"
    else
        failed=$((failed + 1))
        failures+=("$name")
        echo "==> $name FAILED after $((SECONDS - start)) s"
    fi
}

if [ "$(id -u)" -ne 0 ]; then
    echo "scripts/test.sh must run as root (pjdfstest and the unprivileged-mount test need it)" >&2
    exit 2
fi

bash tests/scripts/install-tools.sh || { echo "installing the test tools failed" >&2; exit 1; }
export PATH="$repo/target/tools/bin:$PATH"

run "cargo fmt" cargo fmt --all -- --check
run "cargo clippy" cargo clippy --all-targets --locked -- -D warnings
run "cargo test" cargo test --workspace --locked
run "cargo doc" env RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --document-private-items --locked --quiet
run "macOS type-check" bash tests/scripts/macos-check.sh
bin="$repo/target/debug/tmpfsd"

# A mount for one external suite; always unmounted, by path.
with_mount() {
    local opts=$1
    shift
    local dir
    dir=$(mktemp -d /tmp/tmpfsd-suite.XXXXXX)
    chmod 0755 "$dir"
    if ! "$bin" mount "$dir" -o "$opts"; then
        rmdir "$dir"
        return 1
    fi
    local rc=0
    "$@" "$dir" || rc=$?
    "$bin" unmount --lazy "$dir" || rc=1
    rmdir "$dir" 2>/dev/null || true
    return $rc
}

# The companion crate's example creates each kind of temp file: every path
# it prints must be on the mount.
api_example() {
    local dir=$1 out
    out=$(TMPFSD_DIR="$dir" cargo run --quiet --locked -p tmpfsd-api --example every_kind) || return 1
    echo "$out"
    [ "$(grep -c " $dir" <<<"$out")" -eq 6 ]
}

# The Python module installs with pip from the repository.
pip_install() {
    local target
    target=$(mktemp -d)
    PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --no-deps --target "$target" ./api/python &&
        PYTHONPATH="$target" python3 -c 'import tmpfsd; print("tmpfsd module from", tmpfsd.__file__)'
    local rc=$?
    rm -rf "$target"
    return $rc
}

run "api example on a mount" with_mount "" api_example
run "pip install of the Python module" pip_install
# CPython's own tests of temp files and file I/O, with the mount as TMPDIR
# and working directory, on a small budget so that their files cross
# tiers; a test skipped here but not on kernel tmpfs fails the run.
run "python stdlib tests" with_mount "spool=64k,max_ram=1m" bash tests/scripts/pystdlib.sh
run "pjdfstest" with_mount "allow_other,mode=0755" bash tests/scripts/pjdfstest.sh
run "fsx" with_mount "size=2g" bash tests/scripts/fsx.sh
# A tiny spool threshold and RAM budget, and files of up to 256 KiB, so
# that the file keeps crossing all three tiers: past 16 KiB in RAM it is
# packed, past 64 KiB spilled, and truncates below 16 KiB bring it back;
# with busy polling, so that the polling worker is exercised too.
run "fsx across tiers" with_mount "size=2g,spool=64k,max_ram=16k,busy_poll=200" env FSX_FLEN=262144 bash tests/scripts/fsx.sh
# The same budget with a spool threshold the file never reaches: every
# move is the spiller's (packed while small, spilled past 64 KiB, back to
# RAM below 256 KiB), some 3,000 of them in 100,000 operations.
run "fsx across tiers by pressure" with_mount "size=2g,spool=1m,max_ram=16k" env FSX_FLEN=262144 bash tests/scripts/fsx.sh
# passthrough=on: reopens of the spilled file are passed through to the
# kernel, truncates below 16 KiB bring it back to RAM at its last close, so
# the file keeps alternating between the kernel's I/O and the daemon's.
# Without mapped I/O: fsx leaks its maps, and each keeps a handle open
# that would keep the file from ever being passed through.
run "fsx through passthrough" with_mount "size=2g,spool=64k,max_ram=1m,passthrough=on" \
    env FSX_MMAP=0 FSX_CLOSE_OPEN=5 FSX_FLEN=1048576 bash tests/scripts/fsx.sh

# A test process that was killed (not failed) cannot run its guards: make
# sure no mount of ours outlives the run, and say so if one was found.
for m in $(awk '$5 ~ "^/tmp/tmpfsd-(test|suite)\\." {print $5}' /proc/self/mountinfo); do
    echo "leftover test mount $m: unmounting" >&2
    umount -l "$m" || true
    failed=$((failed + 1))
    failures+=("leftover mount $m")
done

echo
if [ "$failed" -ne 0 ]; then
    echo "failed: ${failures[*]}"
fi
echo "suites: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
