#!/bin/sh
# Builds kiln's libFuzzer targets (clang, ASan + UBSan, -DKILN_FUZZ=ON) into build/fuzz and
# runs each target for SECONDS (default 300) on its corpus, then merges the inputs that
# found new coverage into tests/fuzz/corpus/<target>/. Crashes, leaks and slow inputs are
# written to build/fuzz/artifacts/<target>/ (see docs/fuzzing.md for what to do with them).
# Not run by CI: CI replays the committed corpus through the fuzz_replay_* ctest tests.
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]   (targets: load value engine serve_pbtxt serve_infer;
#                                                  default all)
# Environment: FUZZ_JOBS=N runs N fuzzing processes per target (default 1).
set -eu
cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-300}
[ $# -gt 0 ] && shift
TARGETS=${*:-load value engine serve_pbtxt serve_infer}
JOBS=${FUZZ_JOBS:-1}

# clang and its compiler-rt (libFuzzer and the sanitizer runtimes; Debian's clang-14 pulls in
# libclang-rt-14-dev). Installed when missing, as scripts/install-deps.sh does.
KILN_NEED_CLANG=1 sh scripts/install-deps.sh
probe=$(mktemp -d)
printf 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { (void)d; (void)n; return 0; }\n' >"$probe/p.c"
if ! clang -fsanitize=fuzzer,address,undefined "$probe/p.c" -o "$probe/p" >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "kiln: installing libclang-rt-14-dev (libFuzzer)"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq libclang-rt-14-dev >/dev/null
fi
rm -rf "$probe"

CC=clang cmake -S . -B build/fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKILN_SANITIZE=ON \
      -DKILN_FUZZ=ON >/dev/null
for t in $TARGETS; do
    cmake --build build/fuzz -j "$(nproc 2>/dev/null || echo 2)" --target "fuzz_$t"
done

for t in $TARGETS; do
    corpus=tests/fuzz/corpus/$t
    work=build/fuzz/work/$t
    art=build/fuzz/artifacts/$t
    mkdir -p "$work" "$art"
    echo "kiln: fuzzing $t for $SECONDS_EACH s ($JOBS job(s)); new inputs in $work"
    # -timeout=10: libFuzzer's own limit; anything over 1 s is reported as slow below and
    # should be treated as a hang to fix (see docs/fuzzing.md).
    rc=0
    if [ "$JOBS" -gt 1 ]; then
        build/fuzz/fuzz_$t -max_len=65536 -timeout=10 -rss_limit_mb=3000 \
            -max_total_time="$SECONDS_EACH" -report_slow_units=1 -print_final_stats=1 \
            -artifact_prefix="$art/" -fork="$JOBS" -ignore_crashes=1 "$work" "$corpus" || rc=$?
    else
        build/fuzz/fuzz_$t -max_len=65536 -timeout=10 -rss_limit_mb=3000 \
            -max_total_time="$SECONDS_EACH" -report_slow_units=1 -print_final_stats=1 \
            -artifact_prefix="$art/" "$work" "$corpus" || rc=$?
    fi
    # Keep only what adds coverage to the committed corpus.
    build/fuzz/fuzz_$t -merge=1 -max_len=65536 -timeout=10 -rss_limit_mb=3000 \
        "$corpus" "$work" >/dev/null 2>&1 || true
    if [ "$rc" -ne 0 ] || [ -n "$(ls -A "$art" 2>/dev/null)" ]; then
        echo "kiln: fuzz_$t found problems: see $art/ (reproduce: build/fuzz/fuzz_$t FILE)"
        status=1
    fi
done
echo "kiln: corpus now: $(for t in $TARGETS; do printf '%s=%s ' "$t" "$(ls tests/fuzz/corpus/$t | wc -l)"; done)"
exit "${status:-0}"
