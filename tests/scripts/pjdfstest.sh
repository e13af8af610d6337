#!/usr/bin/env bash
# Runs pjdfstest (the crates.io rewrite) in DIR, which the caller has
# mounted (for tmpfsd: with allow_other, since pjdfstest runs as root and
# switches to other users). Features are those kernel tmpfs passes on Linux;
# the cases in pjdfstest.exclude are reported as expected failures, each
# with its reason there. Prints "pjdfstest: N passed, M failed" and fails
# on any unexpected failure.
#
# Usage: pjdfstest.sh DIR
set -euo pipefail
dir=${1:?usage: pjdfstest.sh DIR}
here=$(cd "$(dirname "$0")" && pwd)
tools="$here/../../target/tools/bin"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# A second, distinct file system for the EXDEV cases.
secondary=$(mktemp -d /var/tmp/pjdfstest-secondary.XXXXXX)
trap 'rm -rf "$work" "$secondary"' EXIT

{
    echo '[features]'
    echo 'posix_fallocate = {}'
    echo 'utime_now = {}'
    echo 'utimensat = {}'
    echo 'rename_ctime = {}'
    echo
    echo '[settings]'
    echo 'naptime = 0.01'
    echo 'allow_remount = false'
    echo 'expected_failures = ['
    # No entries is fine: grep's "no match" is not a failure here.
    { grep -v '^\s*\(#\|$\)' "$here/pjdfstest.exclude" || true; } | awk '{printf "  \"%s\",\n", $1}'
    echo ']'
    echo
    echo '[dummy_auth]'
    echo 'entries = [["nobody", "nogroup"], ["tests", "tests"]]'
} > "$work/pjdfstest.toml"

cd "$work"
rc=0
"$tools/pjdfstest" -c "$work/pjdfstest.toml" -p "$dir" -s "$secondary" > "$work/log" 2>&1 || rc=$?
grep -B1 -A4 'failed$' "$work/log" || true
summary=$(grep '^Summary:' "$work/log" || echo "Summary: no summary (pjdfstest exited $rc)")
echo "$summary"
passed=$(sed -n 's/.* \([0-9]*\) passed.*/\1/p' <<<"$summary")
failed=$(sed -n 's/Summary: \([0-9]*\) failed.*/\1/p' <<<"$summary")
skipped=$(sed -n 's/.* \([0-9]*\) skipped.*/\1/p' <<<"$summary")
echo "pjdfstest: ${passed:-0} passed, ${failed:-1} failed, ${skipped:-0} skipped"
[ "$rc" -eq 0 ] && [ "${failed:-1}" -eq 0 ]
