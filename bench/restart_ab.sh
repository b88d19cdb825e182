#!/usr/bin/env bash
# A/B of restarts: binaries take turns restarting on one data directory (SIGTERM between
# turns), ROUNDS turns each (default 7). Each turn: the time from the process's start to
# `/ready` (polled every 20 ms), and from its own log the time to the log opened and from
# there to the tables loaded. Medians per binary at the end. With SNAPSHOT, each turn starts
# from a fresh copy of that data directory (say one stopped right after an import, its
# compactions still owed) instead of the one the previous turn left. With KILL=1 each turn
# restarts after a SIGKILL instead: the binary is started, NDJSON batches of new dossiers are
# appended for 2 s (`chiso import`), and the server is killed (as bench/national.sh's step 3
# does); the turn's line then says how many events the write model replayed. Usage:
#   DATA=$CARGO_TARGET_DIR/bench-scratch/prof/data bash bench/restart_ab.sh /tmp/chiso-a /tmp/chiso-b
set -euo pipefail
data=${DATA:?the data directory to restart on}
port=17992; url=http://127.0.0.1:$port
out=$(mktemp -d)
for round in $(seq "${ROUNDS:-7}"); do
  for bin in "$@"; do
    name=$(basename "$bin")
    if [ -n "${SNAPSHOT:-}" ]; then
      rm -rf "$data"; cp -a "$SNAPSHOT" "$data"; sync
    fi
    if [ -n "${KILL:-}" ]; then
      "$bin" serve --data-dir "$data" --listen 127.0.0.1:$port --pg-listen off \
        --flight-listen off 2> /dev/null & pid=$!
      until curl -sf $url/ready > /dev/null; do sleep 0.05; done
      python3 "$(dirname "$0")/kill_batches.py" "$url" 300000 \
        | CHISO_LOG=warn "$bin" import --url "$url" - > /dev/null 2>&1 &
      importer=$!
      sleep 2
      kill -KILL $pid; wait $pid 2> /dev/null || true
      wait $importer 2> /dev/null || true
    fi
    s=$(date +%s.%N)
    CHISO_LOG=info "$bin" serve --data-dir "$data" --listen 127.0.0.1:$port \
      --pg-listen off --flight-listen off 2> "$out/log" & pid=$!
    until curl -sf $url/ready > /dev/null; do sleep 0.02; done
    ready=$(echo "$(date +%s.%N) - $s" | bc)
    replayed=$(curl -s $url/metrics | awk '/^chiso_log_replayed_at_open /{print $2}')
    kill -TERM $pid; wait $pid || true
    # RFC 3339 timestamps of the two lines, in seconds since the process started.
    at() { grep -m1 "$1" "$out/log" | cut -d' ' -f1 | xargs -I{} date -d {} +%s.%N; }
    log=$(echo "$(at 'event log opened') - $s" | bc)
    tables=$(echo "$(at 'tables loaded') - $(at 'event log opened')" | bc)
    echo "round $round $name: ready $ready s (log opened at $log s, tables $tables s; $replayed events replayed into the write model)"
    echo "$ready $log $tables" >> "$out/$name"
  done
done
median() { sort -n | awk '{a[NR]=$1} END {printf "%.2f", a[int((NR+1)/2)]}'; }
for bin in "$@"; do
  name=$(basename "$bin")
  echo "$name: median of $(wc -l < "$out/$name") — ready $(cut -d' ' -f1 "$out/$name" | median) s, log opened at $(cut -d' ' -f2 "$out/$name" | median) s, tables $(cut -d' ' -f3 "$out/$name" | median) s"
done
rm -rf "$out"
