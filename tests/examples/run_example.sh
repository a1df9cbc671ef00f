#!/bin/sh
# run_example.sh EXAMPLE [ARG...] -- LINE...
# Runs an example program (examples/); passes when it exits 0 and its output holds every
# LINE exactly as a whole line (in any order: callbacks print from another thread).
set -u
cmd=""
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
    cmd="$cmd '$1'"
    shift
done
[ $# -gt 0 ] && shift
out=$(mktemp)
trap 'rm -f "$out"' EXIT
eval "$cmd" >"$out" 2>&1
rc=$?
fail=0
if [ $rc -ne 0 ]; then
    echo "FAIL: exit status $rc"
    fail=1
fi
for line in "$@"; do
    if ! grep -qxF -- "$line" "$out"; then
        echo "FAIL: missing line: $line"
        fail=1
    fi
done
echo "--- output of$cmd"
cat "$out"
exit $fail
