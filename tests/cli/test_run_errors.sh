# test_run_errors.sh: `kiln run` refuses bad inputs before anything runs, with one clear
# "kiln: ..." line and exit 1, and leaves no output files behind: missing inputs, unknown
# or repeated names, unreadable files, wrong element type, wrong shape or rank, data sets
# that do not match the model.
. "$(dirname "$0")/common.sh"
R=$NODE/test_relu # x: float32[3,4,5]
ADD=$SRC/tests/data/good_add.onnx # A: float32[N,3]
OUTD=$TMP/out_dir

# no_outputs WHAT: the output folder must hold no files after a failed run.
no_outputs() {
    if [ -d "$OUTD" ] && [ -n "$(ls -A "$OUTD")" ]; then
        fail "$1: files left in the output folder: $(ls "$OUTD" | tr '\n' ' ')"
    fi
}

expect_error 1 "missing input 'x'; pass --input NAME=FILE or --input-dir DIR" \
    "$KILN" run "$R/model.onnx" --output-dir "$OUTD"
no_outputs "missing input"

expect_error 1 "no input named 'y'; its inputs are 'x'" \
    "$KILN" run "$R/model.onnx" --input "y=$R/test_data_set_0/input_0.pb" --output-dir "$OUTD"
no_outputs "unknown input name"

expect_error 1 "input 'x' is given twice" "$KILN" run "$R/model.onnx" \
    --input "x=$R/test_data_set_0/input_0.pb" --input "x=$R/test_data_set_0/input_0.pb"

expect_error 1 "input 'x': .*nosuch\.pb" "$KILN" run "$R/model.onnx" --input "x=$TMP/nosuch.pb"

printf 'not a tensor' >"$TMP/garbage.pb"
expect_error 1 "input 'x': .*garbage\.pb" "$KILN" run "$R/model.onnx" --input "x=$TMP/garbage.pb" \
    --output-dir "$OUTD"
no_outputs "unreadable input"

# Wrong element type: int64 where float32 is declared.
write_npy "$TMP/i64.npy" '<i8' '(3, 4, 5)' 480
expect_error 1 "input 'x': expected element type float32, got int64" \
    "$KILN" run "$R/model.onnx" --input "x=$TMP/i64.npy" --output-dir "$OUTD"
no_outputs "wrong dtype"

# Wrong shape: one dim off, and the wrong rank.
write_npy "$TMP/f346.npy" '<f4' '(3, 4, 6)' 288
expect_error 1 "input 'x': expected shape float32\[3,4,5\], got \[3,4,6\] \(dim 2 is 6, expected 5\)" \
    "$KILN" run "$R/model.onnx" --input "x=$TMP/f346.npy" --output-dir "$OUTD"
no_outputs "wrong shape"
write_npy "$TMP/f60.npy" '<f4' '(60,)' 240
expect_error 1 "input 'x': expected shape .*\(rank 3\), got \[60\] \(rank 1\)" \
    "$KILN" run "$R/model.onnx" --input "x=$TMP/f60.npy"

# A symbolic dim binds to any size, but a fixed dim next to it is still checked.
write_npy "$TMP/a24.npy" '<f4' '(2, 4)' 32
expect_error 1 "input 'A': expected shape float32\[N,3\], got \[2,4\]" \
    "$KILN" run "$ADD" --input "A=$TMP/a24.npy"

# --input-dir: a data set of another model (two files for a one-input model), a folder
# without the files, and a path that is no folder.
expect_error 1 "input_1\.pb exists but the model has only 1 input" \
    "$KILN" run "$R/model.onnx" --input-dir "$NODE/test_add_bcast/test_data_set_0" --output-dir "$OUTD"
no_outputs "extra data set file"
mkdir "$TMP/empty_set"
expect_error 1 "missing input 'x': .*empty_set/input_0\.pb does not exist" \
    "$KILN" run "$R/model.onnx" --input-dir "$TMP/empty_set"
expect_error 1 "--input-dir '.*nosuch' is not a folder" \
    "$KILN" run "$R/model.onnx" --input-dir "$TMP/nosuch"

# The output folder's path is taken by a file.
: >"$TMP/a_file"
expect_error 1 "--output-dir '.*a_file' exists and is not a folder" \
    "$KILN" run "$R/model.onnx" --input-dir "$R/test_data_set_0" --output-dir "$TMP/a_file"

# .npy holds tensors only: a sequence output is refused before any file is written.
SEQ=$NODE/test_sequence_insert_at_back
expect_error 1 "output 'output_sequence' is not a tensor; .npy holds tensors only" \
    "$KILN" run "$SEQ/model.onnx" --input-dir "$SEQ/test_data_set_0" --output-dir "$OUTD" --format npy
no_outputs "sequence as npy"

# A broken graph is reported before the (missing) inputs: the cycle, then the missing
# node input, then the short initializer (which refuses to load).
expect_error 1 "graph 'cycle' has a cycle: 2 nodes wait on each other" \
    "$KILN" run "$SRC/tests/data/bad_cycle.onnx" --output-dir "$OUTD"
no_outputs "cycle"
expect_error 1 "Relu node 'relu' input 0 'nope' is not defined by any node, initializer or graph input" \
    "$KILN" run "$SRC/tests/data/bad_missing_input.onnx"
expect_error 1 "initializer 'W' has 4 float32 values; its dims \[2,3\] need 6" \
    "$KILN" run "$SRC/tests/data/bad_short_init.onnx"

# --timeout: a Loop of 2^62 iterations stops after about a second, exit 1, no outputs.
write_npy "$TMP/x1.npy" "<f4" "(1,)" 4
T0=$(date +%s)
expect_error 1 "^kiln: run exceeded its timeout of 1 s at (Loop node 'loop' iteration [0-9]+|Identity node '(keep_going|pass)')$" \
    "$KILN" run "$SRC/tests/data/long_loop.onnx" --input "X=$TMP/x1.npy" --timeout 1 --output-dir "$OUTD"
[ $(($(date +%s) - T0)) -le 10 ] || fail "--timeout 1 took more than 10 s"
no_outputs "timeout"
expect_error 2 "--timeout takes seconds, more than 0; got '0'" \
    "$KILN" run "$SRC/tests/data/long_loop.onnx" --input "X=$TMP/x1.npy" --timeout 0
expect_error 2 "--timeout takes seconds, more than 0; got 'soon'" \
    "$KILN" run "$SRC/tests/data/long_loop.onnx" --input "X=$TMP/x1.npy" --timeout soon

# A model that does not load.
expect_error 1 "cannot open .*nosuch\.onnx" "$KILN" run "$TMP/nosuch.onnx" --input "x=$TMP/f60.npy"
finish
