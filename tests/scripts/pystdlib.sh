#!/usr/bin/env bash
# Runs CPython's own tests of temporary files and file I/O (tempfile, os,
# shutil, mmap, fcntl, posix, io, fileio, tarfile, zipfile, sqlite3,
# pathlib, glob, filecmp, largefile) with DIR as the working directory and
# TMPDIR: the calls real programs make on a temp directory, checked by
# tests their authors wrote. The same tests then run in a directory on
# kernel tmpfs (/dev/shm), and every test skipped on DIR must have been
# skipped on tmpfs too: a skip caused by a missing feature of the mount
# fails the run instead of hiding.
#
# The test package ships with CPython built from source (pyenv, the
# official images); Debian splits it out of the system Python into
# libpython3.N-testsuite, which is installed when missing (and which
# leaves out test_sqlite3).
#
# Usage: pystdlib.sh DIR
# Prints "python stdlib: N test files passed, S tests skipped (each skipped
# on tmpfs too)", followed by the files it could not run, if any.
set -euo pipefail
dir=${1:?usage: pystdlib.sh DIR}
tests=(test_tempfile test_os test_shutil test_mmap test_fcntl test_posix test_io test_fileio
    test_tarfile test_zipfile test_sqlite3 test_pathlib test_glob test_filecmp test_largefile)

if ! python3 -c 'import test.support, test.test_tempfile' 2>/dev/null; then
    pkg=$(python3 -c 'import sys; print("libpython3.%d-testsuite" % sys.version_info[1])')
    echo "installing $pkg (CPython's test package)"
    apt-get install -y -qq "$pkg" >/dev/null || { apt-get update -qq && apt-get install -y -qq "$pkg" >/dev/null; }
    python3 -c 'import test.support, test.test_tempfile' ||
        { echo "python3 has no test package, and $pkg did not provide it" >&2; exit 1; }
fi

# Debian's package leaves some files out (test_sqlite3): those are named
# in the result line, not run.
missing=()
present=()
for t in "${tests[@]}"; do
    if python3 -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('test.$t') is None)" 2>/dev/null; then
        present+=("$t")
    else
        missing+=("$t")
    fi
done
[ ${#present[@]} -gt 0 ] || { echo "none of the test files is in python3's test package" >&2; exit 1; }
tests=("${present[@]}")

# Runs the tests in $1; the ids of the skipped ones go to $2.
run_in() {
    local where=$1 skips=$2 log xml
    log=$(mktemp)
    xml=$(mktemp)
    if ! (cd "$where" && TMPDIR="$where" python3 -m test --junit-xml "$xml" "${tests[@]}" >"$log" 2>&1); then
        tail -n 100 "$log" >&2
        echo "python stdlib tests failed in $where" >&2
        rm -f "$log" "$xml"
        return 1
    fi
    # (Older 3.11 releases print no totals.)
    grep -E '^Total tests:' "$log" >&2 || true
    python3 - "$xml" >"$skips" <<'EOF_PY'
import sys, xml.etree.ElementTree as ET
for case in ET.parse(sys.argv[1]).iter("testcase"):
    if case.find("skipped") is not None:
        print(case.get("classname", "") + "." + case.get("name", ""))
EOF_PY
    sort -u -o "$skips" "$skips"
    rm -f "$log" "$xml"
}

here_skips=$(mktemp)
shm_skips=$(mktemp)
shm=$(mktemp -d /dev/shm/tmpfsd-pystdlib.XXXXXX)
trap 'rm -rf "$shm" "$here_skips" "$shm_skips"' EXIT
run_in "$dir" "$here_skips"
skipped=$(wc -l <"$here_skips")
run_in "$shm" "$shm_skips"
only_here=$(comm -23 "$here_skips" "$shm_skips")
if [ -n "$only_here" ]; then
    echo "skipped on $dir but run on tmpfs:" >&2
    echo "$only_here" >&2
    exit 1
fi
not_run=""
if [ ${#missing[@]} -gt 0 ]; then
    not_run="; not in this python3's test package, so not run: ${missing[*]}"
fi
echo "python stdlib: ${#tests[@]} test files passed, $skipped tests skipped (each skipped on tmpfs too)$not_run"
