# common.sh: helpers sourced by the CLI tests (tests/cli/test_*.sh). POSIX sh.
#
# Every test is run as `sh test_X.sh KILN SOURCE_DIR ONNX_TEST_DATA_DIR` (tests/tests.cmake)
# and exits 0 on success. After sourcing: $KILN, $SRC, $NODE (node test cases), $TMP (a
# fresh folder removed on exit).
set -u
[ $# -ge 3 ] || { echo "usage: $0 KILN SOURCE_DIR ONNX_TEST_DATA_DIR" >&2; exit 2; }
# shellcheck disable=SC2034 # used by the sourcing test
KILN=$1
SRC=$2
NODE=$3/node
TMP=$(mktemp -d "${TMPDIR:-/tmp}/kiln-cli-test.XXXXXX")
trap 'rm -rf "$TMP"' EXIT INT TERM
FAILS=0

fail() {
    echo "FAIL: $*" >&2
    FAILS=$((FAILS + 1))
}

# Prints the result and exits: call at the end of every test.
finish() {
    if [ "$FAILS" -ne 0 ]; then
        echo "$FAILS check(s) failed" >&2
        exit 1
    fi
    echo "all checks passed"
    exit 0
}

# run CMD...: runs a command, keeping its stdout in $TMP/out, stderr in $TMP/err and its
# exit status in $RC.
run() {
    "$@" >"$TMP/out" 2>"$TMP/err"
    RC=$?
}

# expect_ok CMD...: the command must exit 0 with nothing on stderr.
expect_ok() {
    run "$@"
    if [ "$RC" -ne 0 ] || [ -s "$TMP/err" ]; then
        fail "expected success from: $* (exit $RC)"
        sed 's/^/    /' "$TMP/err" >&2
    fi
}

# expect_error CODE PATTERN CMD...: the command must exit CODE and print exactly one line
# on stderr, of the form "kiln: ..." and matching the extended regex PATTERN.
expect_error() {
    code=$1
    pattern=$2
    shift 2
    run "$@"
    if [ "$RC" -ne "$code" ]; then
        fail "expected exit $code, got $RC from: $*"
        sed 's/^/    /' "$TMP/err" >&2
        return
    fi
    lines=$(wc -l <"$TMP/err")
    if [ "$lines" -ne 1 ]; then
        fail "expected one line on stderr, got $lines from: $*"
        sed 's/^/    /' "$TMP/err" >&2
    fi
    if ! grep -q '^kiln: ' "$TMP/err"; then
        fail "stderr does not start with 'kiln: ' for: $*"
    fi
    if ! grep -Eq -- "$pattern" "$TMP/err"; then
        fail "stderr does not match /$pattern/ for: $*"
        sed 's/^/    got: /' "$TMP/err" >&2
    fi
}

# out_has PATTERN [WHAT]: stdout of the last run must match the extended regex PATTERN.
out_has() {
    if ! grep -Eq -- "$1" "$TMP/out"; then
        fail "${2:-output} does not match /$1/"
        sed 's/^/    out: /' "$TMP/out" >&2
    fi
}

# write_npy FILE DESCR SHAPE NBYTES [DATA]: a NumPy v1.0 file, e.g.
# write_npy x.npy '<f4' '(3, 4, 5)' 240. The data is NBYTES zero bytes, or DATA (a printf
# format of octal escapes, e.g. '\000\000\200\077' for float 1.0) when given. The header
# is padded so data starts at a multiple of 64, as numpy writes it.
write_npy() {
    header="{'descr': '$2', 'fortran_order': False, 'shape': $3, }"
    total=$((10 + ${#header} + 1))
    pad=$(((64 - total % 64) % 64))
    hlen=$((${#header} + pad + 1))
    {
        printf '\223NUMPY\001\000'
        # shellcheck disable=SC2059 # the format is an octal escape built here on purpose
        printf "\\$(printf %o $((hlen % 256)))\\$(printf %o $((hlen / 256)))"
        printf '%s' "$header"
        printf "%${pad}s\n" ""
        if [ $# -ge 5 ]; then
            # shellcheck disable=SC2059 # DATA is a format of escapes by contract
            printf "$5"
        else
            head -c "$4" /dev/zero
        fi
    } >"$1"
}
