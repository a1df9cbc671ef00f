# test_build.sh: `kiln build` and engine files. An engine built from tests/data/good_gemms.onnx
# runs (in a fresh process, from the file, its prepacked weights used in the mapping or
# copied out of it) with outputs equal byte for byte to
# `kiln run MODEL --level extended` (the same optimized graph and kernels); `kiln info`
# reports its planned memory; `kiln check` verifies it. A flipped byte in its tables, a
# flipped byte in its weights (found by `kiln check`), another kiln version and a truncated
# file are each refused with a message saying what differs; bad options are usage errors.
. "$(dirname "$0")/common.sh"
D=$SRC/tests/data
M=$D/good_gemms.onnx
IN="--input X=$D/good_gemms_X.npy --input A=$D/good_gemms_A.npy"
E=$TMP/g.kiln

# flip FILE OFFSET: xor one byte of FILE at OFFSET with 0x01.
flip() {
    b=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
    printf "$(printf '\\%03o' $((b ^ 1)))" | dd of="$1" bs=1 seek="$2" conv=notrunc 2>/dev/null
}

expect_ok "$KILN" build "$M" -o "$E" --threads 1
[ -s "$E" ] || fail "build wrote no engine"
# shellcheck disable=SC2086
expect_ok "$KILN" run "$E" $IN --output-dir "$TMP/e"
# shellcheck disable=SC2086
expect_ok "$KILN" run "$M" --level extended --threads 1 $IN --output-dir "$TMP/d"
# The prepacked weights used in the file's mapping and copied out of it at load
# (engine/file.c blob_home, fetch_blob; by default only sections of 16 MB and more), in an
# engine whose MatMul has kiln's own GEMM (its blob has no header that a misplaced copy
# would fail to match: oneDNN's packed weights would be packed again).
expect_ok env KILN_MATMUL_PACKED=pgemm "$KILN" build "$M" -o "$TMP/p.kiln" --threads 1
# shellcheck disable=SC2086
expect_ok env KILN_ENGINE_BLOBS=map "$KILN" run "$TMP/p.kiln" $IN --output-dir "$TMP/em"
# shellcheck disable=SC2086
expect_ok env KILN_ENGINE_BLOBS=copy "$KILN" run "$TMP/p.kiln" $IN --output-dir "$TMP/ec"
for k in 0 1 2; do
    cmp -s "$TMP/e/output_$k.pb" "$TMP/d/output_$k.pb" || fail "engine output $k differs from the direct run"
done
# kiln's GEMM and oneDNN's sum in different orders: the copied blobs against the mapped ones.
for k in 0 1 2; do
    cmp -s "$TMP/ec/output_$k.pb" "$TMP/em/output_$k.pb" || fail "engine output $k differs with its blobs copied"
done
"$KILN" compare "$TMP/em/output_1.pb" "$TMP/d/output_1.pb" --atol 1e-5 >/dev/null 2>&1 ||
    fail "kiln's GEMM's output 1 is not close to oneDNN's"

expect_ok "$KILN" info "$E"
out_has 'memory plan:' "kiln info ENGINE"
out_has 'engine:' "kiln info ENGINE"
expect_ok "$KILN" check "$E"
out_has '^ok \(engine\)$' "kiln check ENGINE"
# shellcheck disable=SC2086
expect_ok "$KILN" bench "$E" $IN --iterations 2 --warmup 0 --json
out_has '"load_ms"' "kiln bench ENGINE --json"

# A flipped byte in the tables (the last section) is refused at load.
cp "$E" "$TMP/bad1.kiln"
flip "$TMP/bad1.kiln" $(($(stat -c %s "$E") - 3))
expect_error 1 "is corrupted: its meta section's checksum does not match" "$KILN" run "$TMP/bad1.kiln" $IN
# A flipped byte in the weights: load skips their checksum (milliseconds), check finds it.
cp "$E" "$TMP/bad2.kiln"
flip "$TMP/bad2.kiln" 4200
expect_error 1 "is corrupted: its weights section's checksum does not match" "$KILN" check "$TMP/bad2.kiln"
# Another kiln version (the version text at offset 16).
cp "$E" "$TMP/old.kiln"
printf '0.0.9' | dd of="$TMP/old.kiln" bs=1 seek=16 conv=notrunc 2>/dev/null
expect_error 1 "was built by kiln 0\.0\.9 \(engine format 1\); this is kiln .*: rebuild it" "$KILN" run "$TMP/old.kiln" $IN
# Truncated.
head -c 5000 "$E" >"$TMP/short.kiln"
expect_error 1 "truncated" "$KILN" info "$TMP/short.kiln"

# Options.
expect_error 2 "build needs -o OUT.kiln" "$KILN" build "$M"
expect_error 2 "min: and max:" "$KILN" build "$M" -o "$TMP/x.kiln" --profile "X=opt:1x4"
expect_error 2 "--level takes none, basic, extended or layout" "$KILN" build "$M" -o "$TMP/x.kiln" --level fast
expect_error 1 "memory limit is 1 bytes" "$KILN" build "$M" -o "$TMP/x.kiln" --memory-limit 1
[ ! -e "$TMP/x.kiln" ] || fail "a failed build left a file behind"
expect_error 2 "is an engine, optimized when it was built: drop --level" "$KILN" run "$E" --level basic $IN
finish
