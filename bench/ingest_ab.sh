#!/usr/bin/env bash
# A/B of the ingest path as a user runs it: the demo history (`chiso demo $DEMO_ARGS`), its first
# 90 % posted by `chiso import --url` (a separate process) to a fresh release `chiso serve` with
# everything it normally does running (the fold, the indexer, the scheduler), then a subscriber
# to one category (SSE, `category=service`) catching up from position 0, then the last 10 %
# posted while the server is SIGKILLed after a second: the time until it is `/ready` again,
# and how many events its write model replayed. The binaries take turns, RUNS times each;
# medians. For a change to the ingest path, measured against the binary
# before it (the last binary given also generates and imports the history):
#   cp $CARGO_TARGET_DIR/release/chiso /tmp/chiso-old   # before the change
#   bash bench/ingest_ab.sh /tmp/chiso-old $CARGO_TARGET_DIR/release/chiso
# KEEP_ROCKSDB_LOGS=dir keeps each run's RocksDB LOG files there. PIPE=1 times the import as
# `bench/national.sh` does, from the generator through a pipe (`chiso demo | chiso import -`),
# so that the generator shares the cores with the server as it does there.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/chiso-target}"
binaries=("$@"); new=${binaries[-1]}; RUNS=${RUNS:-3}
scratch="$CARGO_TARGET_DIR/bench-scratch"; mkdir -p "$scratch"
history="$scratch/ab.ndjson"; port=17981; url="http://127.0.0.1:$port"
now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
"$new" demo ${DEMO_ARGS:-} --output "$history"
all=$(wc -l < "$history")
events=$((all * 9 / 10))
first="$scratch/ab-first.ndjson"; rest="$scratch/ab-rest.ndjson"
head -n "$events" "$history" > "$first"; tail -n +"$((events + 1))" "$history" > "$rest"
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
echo "# $(date -u +%FT%TZ) $(nproc) cores; chiso demo ${DEMO_ARGS:-}: $all events ($events imported and timed, then the rest under a SIGKILL), $services of category service"

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

# After a SIGKILL: seconds until /ready, and the events the write model replayed at open.
# Sets pid, ready and replayed.
restart() {
  local bin=$1 data=$2 s
  s=$(now)
  CHISO_LOG=warn "$bin" serve --data-dir "$data" --listen "127.0.0.1:$port" &
  pid=$!
  until curl -sf "$url/ready" > /dev/null; do sleep 0.05; done
  ready=$(echo "$(now) - $s" | bc)
  replayed=$(curl -sf "$url/metrics" | awk '/^chiso_log_replayed_at_open /{print $2}')
  replayed=${replayed:-n/a}
}

declare -A rates subs readies replays
for run in $(seq "$RUNS"); do
  for bin in "${binaries[@]}"; do
    side=$bin
    data=$(mktemp -d "$scratch/ab-XXXX")
    CHISO_LOG=warn "$bin" serve --data-dir "$data" --listen "127.0.0.1:$port" &
    pid=$!
    until curl -sf "$url/health" > /dev/null; do sleep 0.1; done
    s=$(now)
    if [ -n "${PIPE:-}" ]; then
      { "$new" demo ${DEMO_ARGS:-} 2> /dev/null || true; } | head -n "$events" | "$new" import --url "$url" - 2> /dev/null
    else
      "$new" import --url "$url" "$first" 2> /dev/null
    fi
    e=$(now)
    rate=$(echo "$events / ($e - $s)" | bc)
    curl -sf -o /dev/null "$url/v1/streams/$live" -d "{\"events\":[{\"id\":\"$(python3 -c 'import uuid; print(uuid.uuid4())')\",\"type\":\"ServiceLevelChanged\",\"data\":{\"level\":4,\"at\":\"2019-12-31T08:00:00+07:00\"}}]}"
    sub=$(catch_up)
    "$new" import --url "$url" "$rest" > /dev/null 2>&1 &
    importer=$!
    sleep 1
    kill -KILL $pid; wait $pid 2>/dev/null || true
    kill $importer 2>/dev/null; wait $importer 2>/dev/null || true
    restart "$bin" "$data"
    echo "$side run $run: import $rate events/s, category=service caught up in $sub s, ready $ready s after SIGKILL (replayed $replayed)"
    rates[$side]+="$rate "; subs[$side]+="$sub "; readies[$side]+="$ready "; replays[$side]+="$replayed "
    kill -TERM $pid; wait $pid || true
    # RocksDB's own logs of the run (flushes and compactions by column family), if asked for.
    if [ -n "${KEEP_ROCKSDB_LOGS:-}" ]; then
      mkdir -p "$KEEP_ROCKSDB_LOGS/$(basename "$side")-$run"
      cp "$data"/log/LOG* "$KEEP_ROCKSDB_LOGS/$(basename "$side")-$run/"
    fi
    rm -rf "$data"
  done
done
for side in "${binaries[@]}"; do
  echo "$side: import $(echo ${rates[$side]} | tr ' ' '\n' | median) events/s (runs: ${rates[$side]}), category=service catch-up $(echo ${subs[$side]} | tr ' ' '\n' | median) s (runs: ${subs[$side]}), ready after SIGKILL $(echo ${readies[$side]} | tr ' ' '\n' | median) s (runs: ${readies[$side]}; replayed: ${replays[$side]})"
done
rm -f "$history" "$first" "$rest"
