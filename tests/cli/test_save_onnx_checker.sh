# test_save_onnx_checker.sh: models written by `kiln convert` (kiln_model_save) pass
# onnx.checker.check_model(full_check=True) of Debian's python3-onnx, and hold the same
# graph as the original (ops, attributes, initializer values) when written unchanged.
# Converted models (--opset 17, the newest opset python3-onnx 1.12 knows) pass the checker
# and still reproduce their test's expected outputs. There is no skip: without python3-onnx
# this test fails (scripts/install-deps.sh installs it).
. "$(dirname "$0")/common.sh"

PY=/usr/bin/python3
if ! "$PY" -c "import onnx" 2>"$TMP/pyerr"; then
    echo "FAIL: $PY cannot import onnx (install python3-onnx: scripts/install-deps.sh)" >&2
    sed 's/^/    /' "$TMP/pyerr" >&2
    exit 1
fi
SUITES=$(dirname "$NODE")

# check.py LIST: each line of LIST is "ORIGINAL WRITTEN [same]": the checker on WRITTEN (by
# path, so external data is checked too); with "same", the graph must match ORIGINAL's. One
# Python process checks them all; it prints "FAIL WRITTEN: why" per failure, "checked N".
cat >"$TMP/check.py" <<'PYEOF'
import os
import shutil
import sys
import tempfile

import onnx
from onnx import numpy_helper

def check(orig, new, same):
    # check_model(path, full_check=True) writes the shape-inferred model back over the file it
    # checks (onnx 1.12), so it checks a copy (with its external data file, if any).
    tmp = tempfile.mkdtemp()
    for f in (new, new + ".data"):
        if os.path.exists(f):
            shutil.copy(f, tmp)
    onnx.checker.check_model(os.path.join(tmp, os.path.basename(new)), full_check=True)
    shutil.rmtree(tmp)
    if same:
        a, b = onnx.load(orig), onnx.load(new)

        def nodes(g):
            out = []
            for n in g.node:
                attrs = []
                for at in n.attribute:
                    v = onnx.helper.get_attribute_value(at)
                    if isinstance(v, onnx.GraphProto):
                        v = nodes(v)
                    elif isinstance(v, onnx.TensorProto):
                        v = numpy_helper.to_array(v).tolist()
                    elif isinstance(v, onnx.SparseTensorProto):
                        v = (numpy_helper.to_array(v.values).tolist(),
                             numpy_helper.to_array(v.indices).tolist(), list(v.dims))
                    attrs.append((at.name, repr(v)))
                out.append((n.op_type, n.domain, list(n.input), list(n.output), n.name, attrs))
            return out

        def inits(g):
            return {t.name: numpy_helper.to_array(t).tobytes() for t in g.initializer}

        assert nodes(a.graph) == nodes(b.graph), "nodes differ"
        assert inits(a.graph) == inits(b.graph), "initializers differ"
        for f in ("input", "output", "value_info"):
            assert list(getattr(a.graph, f)) == list(getattr(b.graph, f)), f + " differ"
        assert list(a.opset_import) == list(b.opset_import), "opset_import differs"
        assert list(a.metadata_props) == list(b.metadata_props), "metadata differs"
        assert [f.name for f in a.functions] == [f.name for f in b.functions], "functions differ"
        assert a.ir_version == b.ir_version and a.producer_name == b.producer_name, "header differs"


n, bad = 0, 0
for line in open(sys.argv[1]):
    args = line.split()
    try:
        check(args[0], args[1], len(args) > 2)
        n += 1
    except Exception as e:  # report every model, not just the first failure
        bad += 1
        print("FAIL %s: %s" % (args[1], (str(e) or type(e).__name__).splitlines()[0]))
print("checked", n)
sys.exit(1 if bad else 0)
PYEOF

check() { # ORIGINAL WRITTEN [same]: queued for check.py
    echo "$*" >>"$TMP/list"
}
: >"$TMP/list"

# Written unchanged: every kind of content the checker of onnx 1.12 accepts.
for m in "$SRC/tests/data/good_add.onnx" "$SRC/tests/data/good_gemms.onnx" \
    "$SRC/tests/fuzz/corpus/load/hand_constant_sparse.onnx" \
    "$SRC/tests/fuzz/corpus/load/hand_function.onnx" \
    "$NODE/test_if/model.onnx" "$NODE/test_loop11/model.onnx" \
    "$NODE/test_sequence_map_identity_1_sequence/model.onnx" \
    "$NODE/test_scan9_sum/model.onnx" "$NODE/test_nonmaxsuppression_center_point_box_format/model.onnx"; do
    out="$TMP/$(basename "$(dirname "$m")")_$(basename "$m")"
    expect_ok "$KILN" convert "$m" -o "$out"
    check "$m" "$out" same
done

# External data: every tensor of 16 bytes or more goes to OUT.data.
expect_ok "$KILN" convert "$SRC/tests/data/good_gemms.onnx" -o "$TMP/ext.onnx" --external-data 16
[ -s "$TMP/ext.onnx.data" ] || fail "no external data file ext.onnx.data"
check "$SRC/tests/data/good_gemms.onnx" "$TMP/ext.onnx" same

# Converted to opset 17: valid, and the test data set still passes.
for c in pytorch-operator/test_operator_index pytorch-operator/test_operator_pad \
    pytorch-operator/test_operator_add_broadcast pytorch-operator/test_operator_clip \
    node/test_upsample_nearest node/test_dropout_default_old node/test_scatter_with_axis \
    node/test_split_equal_parts_1d_opset13 pytorch-operator/test_operator_reduced_mean; do
    d="$SUITES/$c"
    out="$TMP/$(basename "$c")_17.onnx"
    expect_ok "$KILN" convert "$d/model.onnx" -o "$out" --opset 17
    check "$d/model.onnx" "$out"
    rm -rf "$TMP/outs"
    expect_ok "$KILN" run "$out" --input-dir "$d/test_data_set_0" --output-dir "$TMP/outs"
    for f in "$TMP"/outs/output_*.pb; do
        [ -f "$d/test_data_set_0/$(basename "$f")" ] || continue
        expect_ok "$KILN" compare "$f" "$d/test_data_set_0/$(basename "$f")"
    done
done

# A refusal names the node and writes nothing.
expect_error 1 "Scan node .*batch axis" "$KILN" convert "$NODE/test_scan_sum/model.onnx" \
    -o "$TMP/scan.onnx" --opset 17
[ -e "$TMP/scan.onnx" ] && fail "a refused conversion wrote its output"
expect_error 2 "needs -o" "$KILN" convert "$NODE/test_if/model.onnx"
expect_error 1 "cannot create a temporary file for '$TMP/no/such/out.onnx'" \
    "$KILN" convert "$NODE/test_if/model.onnx" -o "$TMP/no/such/out.onnx"
expect_error 1 "upward only" "$KILN" convert "$NODE/test_if/model.onnx" -o "$TMP/x.onnx" --opset 9

if ! "$PY" "$TMP/check.py" "$TMP/list" >"$TMP/pyout" 2>&1; then
    fail "onnx.checker or the comparison refused written models:"
    sed 's/^/    /' "$TMP/pyout" >&2
fi
grep -q '^checked 19$' "$TMP/pyout" || fail "expected 19 models checked: $(tail -1 "$TMP/pyout")"
finish
