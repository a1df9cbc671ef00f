# test_graph.sh: `kiln graph` end to end, down to what a browser shows.
#
# Draws the demo CNN (demo/digits_cnn.onnx), tests/data/draw_fused_if.onnx (a fused kiln op
# and an If with two branches) and the ONNX test model node/test_loop11 (a Loop body) as
# DOT, SVG and HTML, then opens the HTML pages and one SVG in headless Chromium:
#   - the screenshot is not blank (enough non-white pixels; PNG decoded with python3's zlib);
#   - the DOM after the page's script ran has exactly one op box
#     (<g id="op_..." class="node kiln-op">) per node of every graph of the model, and the
#     pan/zoom script took over the SVG's size (its width attribute is gone);
# plus the usage and file errors of the command. Needs chromium (scripts/install-deps.sh
# installs it); without it the test FAILS, on purpose: a browser check that skips itself is
# a check nobody runs. Without Graphviz (DOT only), SVG/HTML must be refused in one line.
. "$(dirname "$0")/common.sh"

DEMO=$SRC/demo/digits_cnn.onnx
FUSED=$SRC/tests/data/draw_fused_if.onnx
LOOP=$NODE/test_loop11/model.onnx

# ------------------------------------------------------------------ DOT (always available)
expect_ok "$KILN" graph "$DEMO" -o "$TMP/demo.dot"
out_has '^wrote .*/demo\.dot \(11 nodes\)$' "graph demo.dot: summary line"
[ "$(grep -c '\[id="op_' "$TMP/demo.dot")" -eq 11 ] || fail "demo.dot: expected 11 op boxes"
grep -q 'W \[32,1,3,3\]' "$TMP/demo.dot" || fail "demo.dot: Conv weight not folded into the box"
expect_ok "$KILN" graph "$FUSED" -o "$TMP/fused.gv"
[ "$(grep -c 'subgraph cluster_' "$TMP/fused.gv")" -eq 2 ] || fail "fused.gv: expected 2 clusters"
expect_ok "$KILN" graph "$DEMO" --format dot -o "$TMP/demo.txt"
cmp -s "$TMP/demo.dot" "$TMP/demo.txt" || fail "--format dot differs from the .dot output"

# ------------------------------------------------------------------ usage and file errors
expect_error 2 'graph needs -o' "$KILN" graph "$DEMO"
expect_error 2 'graph needs a MODEL' "$KILN" graph -o "$TMP/x.svg"
expect_error 2 "cannot tell the format of '.*x\.png'" "$KILN" graph "$DEMO" -o "$TMP/x.png"
expect_error 2 "unknown format 'pdf'" "$KILN" graph "$DEMO" --format pdf -o "$TMP/x.svg"
expect_error 2 "unknown option '--frobnicate'" "$KILN" graph "$DEMO" --frobnicate -o "$TMP/x.svg"
expect_error 2 "unknown level 'fast'" "$KILN" graph "$DEMO" --level fast -o "$TMP/x.svg"

# ------------------------------------------------------------------ --optimized: fused groups
# The demo's Conv+Relu pairs become fused boxes that name what they stand for (kiln.FusedConv,
# or kiln.ConvNhwc once the nhwc pass runs the convolutions channels-last, with Transposes at
# the region's edges), no Relu is left on its own, and edges carry inferred shapes.
expect_ok "$KILN" graph "$DEMO" --optimized -o "$TMP/demo-opt.dot"
fused=$(grep -cE '<B>(FusedConv|ConvNhwc)</B><BR/><I>= Conv \+ Relu</I>' "$TMP/demo-opt.dot")
[ "$fused" -ge 2 ] || fail "demo-opt.dot: expected fused boxes showing 'Conv + Relu', got $fused"
! grep -q '<B>Relu</B>' "$TMP/demo-opt.dot" || fail "demo-opt.dot: a Relu box is left unfused"
boxes=$(grep -c '\[id="op_' "$TMP/demo-opt.dot")
out_has "^wrote .*/demo-opt\.dot \($boxes nodes\)$" "graph --optimized: summary counts the optimized nodes"
# (channels-last inside the nhwc region: the first Conv's output is [N,8,8,32] there)
grep -qE 'label="\[N,(32,8,8|8,8,32)\]"' "$TMP/demo-opt.dot" || fail "demo-opt.dot: no inferred shape on the Conv edges"
expect_error 1 'no-such\.onnx' "$KILN" graph "$TMP/no-such.onnx" -o "$TMP/x.svg"
: >"$TMP/afile"
expect_error 1 "cannot .*$TMP/afile/x\.dot" "$KILN" graph "$DEMO" -o "$TMP/afile/x.dot"
[ -z "$(ls "$TMP" | grep '\.tmp\.')" ] || fail "a temporary file was left behind"

# ------------------------------------------------------------------ SVG and HTML
run "$KILN" graph "$DEMO" -o "$TMP/demo.svg"
if [ "$RC" -ne 0 ] && grep -q 'without Graphviz' "$TMP/err"; then
    [ "$(wc -l <"$TMP/err")" -eq 1 ] || fail "the no-Graphviz error is not one line"
    [ ! -e "$TMP/demo.svg" ] || fail "a file was written although SVG is unsupported"
    fail "kiln was built without Graphviz (scripts/install-deps.sh installs libgraphviz-dev): the SVG/HTML and browser checks cannot run"
    finish
fi
[ "$RC" -eq 0 ] || { fail "graph demo.svg failed: $(cat "$TMP/err")"; finish; }
expect_ok "$KILN" graph "$DEMO" -o "$TMP/demo.html"
expect_ok "$KILN" graph "$FUSED" -o "$TMP/fused.html"
expect_ok "$KILN" graph "$LOOP" -o "$TMP/loop.html"

if ! command -v chromium >/dev/null 2>&1; then
    fail "chromium is not installed (scripts/install-deps.sh installs it): the browser checks cannot run"
    finish
fi

# browse ARGS... FILE: headless Chromium with a throwaway profile and no network chatter.
browse() {
    prof=$(mktemp -d "$TMP/chromium.XXXXXX")
    timeout 120 chromium --headless --no-sandbox --disable-gpu --disable-background-networking \
        --disable-component-update --disable-sync --no-first-run --user-data-dir="$prof" "$@" \
        2>>"$TMP/chromium.log"
}

# nonwhite PNG: prints how many pixels are not (near) white. python3 standard library only.
nonwhite() {
    python3 - "$1" <<'PY'
import struct, sys, zlib
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
pos, idat, w = 8, b"", 0
while pos < len(data):
    n, kind = struct.unpack(">I4s", data[pos:pos + 8])
    body = data[pos + 8:pos + 8 + n]
    if kind == b"IHDR":
        w, h, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
        assert depth == 8 and color in (2, 6) and interlace == 0, "unexpected PNG format"
        bpp = 3 if color == 2 else 4
    elif kind == b"IDAT":
        idat += body
    pos += 12 + n
raw, stride, prev, count, i = zlib.decompress(idat), w * bpp, None, 0, 0
for _ in range(h):
    f, line = raw[i], bytearray(raw[i + 1:i + 1 + stride])
    i += 1 + stride
    for x in range(stride):
        a = line[x - bpp] if x >= bpp else 0
        b = prev[x] if prev else 0
        c = prev[x - bpp] if prev and x >= bpp else 0
        if f == 1: line[x] = (line[x] + a) & 255
        elif f == 2: line[x] = (line[x] + b) & 255
        elif f == 3: line[x] = (line[x] + (a + b) // 2) & 255
        elif f == 4:
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    count += sum(1 for x in range(0, stride, bpp) if min(line[x:x + 3]) < 200)
    prev = line
print(count)
PY
}

# check_page FILE NODES: screenshot not blank, NODES op boxes in the live DOM.
check_page() {
    f=$1
    want=$2
    base=$(basename "$f")
    browse --screenshot="$TMP/$base.png" --window-size=900,1200 "file://$f" >/dev/null
    if [ ! -s "$TMP/$base.png" ]; then
        fail "$base: chromium wrote no screenshot ($(tail -n 1 "$TMP/chromium.log"))"
        return
    fi
    px=$(nonwhite "$TMP/$base.png")
    # a blank page is 0; the demo CNN fitted in the window is several thousand
    [ "${px:-0}" -ge 2000 ] || fail "$base: screenshot looks blank ($px non-white pixels)"
    browse --dump-dom "file://$f" >"$TMP/$base.dom"
    got=$(grep -o '<g id="op_[0-9_]*" class="node kiln-op"' "$TMP/$base.dom" | wc -l)
    [ "$got" -eq "$want" ] || fail "$base: $got op boxes in the DOM, the model has $want nodes"
    case $base in
        *.html)
            # the script ran: it removed the SVG's fixed size in favour of the viewBox
            grep -o '<svg[^>]*>' "$TMP/$base.dom" | grep -q ' width=' &&
                fail "$base: the pan/zoom script did not run (the SVG keeps its width)"
            grep -q 'viewBox=' "$TMP/$base.dom" || fail "$base: the SVG has no viewBox" ;;
    esac
}

# Node counts: the demo's from `kiln info`; draw_fused_if has 3 main nodes + 1 per branch
# (tests/data/make_draw_models.py); test_loop11 has the Loop + 9 nodes in its body.
"$KILN" info "$DEMO" >"$TMP/info"
demo_nodes=$(sed -n 's/^nodes (\([0-9]*\)):$/\1/p' "$TMP/info")
check_page "$TMP/demo.html" "$demo_nodes"
check_page "$TMP/demo.svg" "$demo_nodes"
check_page "$TMP/fused.html" 5
check_page "$TMP/loop.html" 10
finish
