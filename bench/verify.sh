#!/usr/bin/env bash
# How fast the log's hash chain is verified (issue #17): the demo history (`chiso demo
# $DEMO_ARGS`) posted by `chiso import --url` to a fresh release `chiso serve`; once the chain
# thread has caught up with the head, `GET /v1/verify` of the whole log through `chiso verify
# --url` (the server recomputes it while serving), then, the server stopped, `chiso verify
# --data-dir` (the log opened read-only); beside them `sha256sum` of the same events as NDJSON,
# the floor of hashing those bytes on this machine. RUNS times each; medians.
#   CHISO=/path/to/chiso bash bench/verify.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/chiso-target}"
if [ -z "${CHISO:-}" ]; then cargo build --release --bin chiso -q; fi
bin="${CHISO:-$CARGO_TARGET_DIR/release/chiso}"; RUNS=${RUNS:-3}
scratch="$CARGO_TARGET_DIR/bench-scratch"; mkdir -p "$scratch"
history="$scratch/verify.ndjson"; data=$(mktemp -d "$scratch/verify-XXXX")
port=17983; url="http://127.0.0.1:$port"
now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
trap 'kill $pid 2>/dev/null || true; rm -rf "$data" "$history"' EXIT
"$bin" demo ${DEMO_ARGS:-} --output "$history"
events=$(wc -l < "$history")
echo "# $(date -u +%FT%TZ) $(nproc) cores; $bin; chiso demo ${DEMO_ARGS:-}: $events events, $(du -h "$history" | cut -f1) of NDJSON"
CHISO_LOG=warn "$bin" serve --data-dir "$data" --listen "127.0.0.1:$port" &
pid=$!
until curl -sf "$url/health" > /dev/null; do sleep 0.1; done
"$bin" import --url "$url" "$history" 2>/dev/null
metric() { curl -sf "$url/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
until [ "$(metric chiso_log_chained_position)" = "$(metric chiso_log_head_position)" ]; do sleep 0.1; done
served=(); offline=(); floor=()
for run in $(seq "$RUNS"); do
  answer=$("$bin" verify --url "$url" 2>/dev/null)
  served+=("$(echo "$answer" | python3 -c 'import json,sys; a=json.load(sys.stdin); assert a["ok"]; print(round(a["events_per_second"]))')")
done
bytes=$(echo "$answer" | python3 -c 'import json,sys; print(json.load(sys.stdin)["bytes"])')
logged=$(echo "$answer" | python3 -c 'import json,sys; print(json.load(sys.stdin)["events"])')
kill -TERM $pid; wait $pid || true
for run in $(seq "$RUNS"); do
  s=$(now); "$bin" verify --data-dir "$data" > /dev/null 2>&1; e=$(now)
  offline+=("$(echo "$logged / ($e - $s)" | bc)")
  s=$(now); sha256sum "$history" > /dev/null; e=$(now)
  floor+=("$(echo "$events / ($e - $s)" | bc)")
done
echo "the log: $logged events in chunks of $bytes bytes"
echo "chiso verify --url (GET /v1/verify, served): $(printf '%s\n' "${served[@]}" | median) events/s (runs: ${served[*]})"
echo "chiso verify --data-dir (stopped, read-only open included): $(printf '%s\n' "${offline[@]}" | median) events/s (runs: ${offline[*]})"
echo "sha256sum of the NDJSON: $(printf '%s\n' "${floor[@]}" | median) events/s (runs: ${floor[*]})"
