# test_serve_poll.sh: `kiln serve --model-control-mode poll` (tests/cli/serve_client.py --poll):
# model folders added, changed, broken and removed while the server runs.
. "$(dirname "$0")/common.sh"

expect_error 2 "--repository-poll-secs takes 1..86400" "$KILN" serve --model-repository "$TMP" \
    --model-control-mode poll --repository-poll-secs 0
python3 "$SRC/tests/cli/serve_client.py" "$KILN" "$SRC" "$(dirname "$NODE")" --poll || fail "serve_client.py --poll"
finish
