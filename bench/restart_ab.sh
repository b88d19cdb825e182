#!/usr/bin/env bash
# A/B of restarts: binaries take turns restarting on one data directory (SIGTERM between
# turns), ROUNDS turns each (default 7). Each turn: the time from the process's start to
# `/ready` (polled every 20 ms), and from its own log the time to the log opened and from
# there to the tables loaded. Medians per binary at the end. With SNAPSHOT, each turn starts
# from a fresh copy of that data directory (say one stopped right after an import, its
# compactions still owed) instead of the one the previous turn left. Usage:
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
    s=$(date +%s.%N)
    CHISO_LOG=info "$bin" serve --data-dir "$data" --listen 127.0.0.1:$port \
      --pg-listen off --flight-listen off 2> "$out/log" & pid=$!
    until curl -sf $url/ready > /dev/null; do sleep 0.02; done
    ready=$(echo "$(date +%s.%N) - $s" | bc)
    kill -TERM $pid; wait $pid || true
    # RFC 3339 timestamps of the two lines, in seconds since the process started.
    at() { grep -m1 "$1" "$out/log" | cut -d' ' -f1 | xargs -I{} date -d {} +%s.%N; }
    log=$(echo "$(at 'event log opened') - $s" | bc)
    tables=$(echo "$(at 'tables loaded') - $(at 'event log opened')" | bc)
    echo "round $round $name: ready $ready s (log opened at $log s, tables $tables s)"
    echo "$ready $log $tables" >> "$out/$name"
  done
done
median() { sort -n | awk '{a[NR]=$1} END {printf "%.2f", a[int((NR+1)/2)]}'; }
for bin in "$@"; do
  name=$(basename "$bin")
  echo "$name: median of $(wc -l < "$out/$name") — ready $(cut -d' ' -f1 "$out/$name" | median) s, log opened at $(cut -d' ' -f2 "$out/$name" | median) s, tables $(cut -d' ' -f3 "$out/$name" | median) s"
done
rm -rf "$out"
