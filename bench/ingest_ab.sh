#!/usr/bin/env bash
# A/B of the ingest path as a user runs it: the demo history (`chiso demo $DEMO_ARGS`) posted by
# `chiso import --url` (a separate process) to a fresh release `chiso serve` with everything it
# normally does running (the fold, the indexer, the scheduler), then a subscriber to one
# category (SSE, `category=service`) catching up from position 0. The binaries take turns,
# RUNS times each; medians. For a change to the ingest path, measured against the binary
# before it (the last binary given also generates and imports the history):
#   cp $CARGO_TARGET_DIR/release/chiso /tmp/chiso-old   # before the change
#   bash bench/ingest_ab.sh /tmp/chiso-old $CARGO_TARGET_DIR/release/chiso
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/chiso-target}"
binaries=("$@"); new=${binaries[-1]}; RUNS=${RUNS:-3}
scratch="$CARGO_TARGET_DIR/bench-scratch"; mkdir -p "$scratch"
history="$scratch/ab.ndjson"; port=17981; url="http://127.0.0.1:$port"
now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
"$new" demo ${DEMO_ARGS:-} --output "$history"
events=$(wc -l < "$history")
services=$(grep -c '"stream": *"service-' "$history" || true)
# A service never withdrawn: after the import one more of its events goes to the log's tail, so
# the subscriber's catch-up spans the whole log.
live=$(python3 - "$history" <<'PY'
import json, sys
launched, withdrawn = [], set()
for line in open(sys.argv[1]):
    if '"service-' not in line:
        continue
    e = json.loads(line)
    if e["type"] == "ServiceLaunched":
        launched.append(e["stream"])
    elif e["type"] == "ServiceWithdrawn":
        withdrawn.add(e["stream"])
print(next(s for s in launched if s not in withdrawn))
PY
)
echo "# $(date -u +%FT%TZ) $(nproc) cores; chiso demo ${DEMO_ARGS:-}: $events events, $services of category service"

# Seconds until an SSE subscriber to `category=service` from 0 has received every one of them
# and the one appended at the tail.
catch_up() {
  python3 - "$url" "$((services + 1))" <<'PY'
import http.client, sys, time, urllib.parse
url, want = urllib.parse.urlsplit(sys.argv[1]), int(sys.argv[2])
start = time.monotonic()
connection = http.client.HTTPConnection(url.hostname, url.port, timeout=600)
connection.request("GET", "/v1/subscribe?from=0&category=service")
response, seen = connection.getresponse(), 0
assert response.status == 200, response.status
while seen < want:
    line = response.readline()
    if not line:
        sys.exit("the stream ended early")
    seen += line.startswith(b"id:")
print(f"{time.monotonic() - start:.3f}")
PY
}

declare -A rates subs
for run in $(seq "$RUNS"); do
  for bin in "${binaries[@]}"; do
    side=$bin
    data=$(mktemp -d "$scratch/ab-XXXX")
    CHISO_LOG=warn "$bin" serve --data-dir "$data" --listen "127.0.0.1:$port" &
    pid=$!
    until curl -sf "$url/health" > /dev/null; do sleep 0.1; done
    s=$(now); "$new" import --url "$url" "$history" 2>/dev/null; e=$(now)
    rate=$(echo "$events / ($e - $s)" | bc)
    curl -sf -o /dev/null "$url/v1/streams/$live" -d "{\"events\":[{\"id\":\"$(python3 -c 'import uuid; print(uuid.uuid4())')\",\"type\":\"ServiceLevelChanged\",\"data\":{\"level\":4,\"at\":\"2019-12-31T08:00:00+07:00\"}}]}"
    sub=$(catch_up)
    echo "$side run $run: import $rate events/s, category=service caught up in $sub s"
    rates[$side]+="$rate "; subs[$side]+="$sub "
    kill -TERM $pid; wait $pid || true
    rm -rf "$data"
  done
done
for side in "${binaries[@]}"; do
  echo "$side: import $(echo ${rates[$side]} | tr ' ' '\n' | median) events/s (runs: ${rates[$side]}), category=service catch-up $(echo ${subs[$side]} | tr ' ' '\n' | median) s (runs: ${subs[$side]})"
done
rm -f "$history"
