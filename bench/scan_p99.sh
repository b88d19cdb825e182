#!/usr/bin/env bash
# The 64-client single-append p99 while the §8 group-by loops, alone on a data directory
# (DATA, default adhoc.sh's): each argument is name:extra `chiso serve` arguments; BIN the
# binary. What adhoc.sh does before that phase, to find what lengthens its tail: EXPORT=1
# exports every dossier as Parquet first, QUERIES=1 runs its five queries 8 times each, SAMPLE=1
# samples the resident set and /ready every 2 s meanwhile. Usage:
#   bash bench/scan_p99.sh "t2:" "t1:--sql-threads 1"
mkdir -p /tmp/ab
command -v wrk > /dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; }
cd "$(dirname "$0")/.."
D=${DATA:-$HOME/.cache/chiso-target/bench-scratch/adhoc/data}; port=17992; url=http://127.0.0.1:$port
scan='{"sql":"SELECT province, channel, timeliness, count(*) AS dossiers, avg(paused_seconds) AS avg_paused_seconds, sum(CASE WHEN paid_online THEN 1 ELSE 0 END) AS paid_online FROM dossiers GROUP BY province, channel, timeliness ORDER BY province, channel, timeliness"}'
for pair in "$@"; do
  name=${pair%%:*}; args=${pair#*:}
  CHISO_LOG=${CHISO_LOG:-warn} ${BIN:?the chiso binary to run} serve --data-dir $D --listen 127.0.0.1:$port $args 2>>/tmp/ab/scan-server.log & pid=$!
  until curl -sf $url/ready >/dev/null; do sleep 0.05; done
  read -r CHISO_AGENCY CHISO_SERVICE < <(bash bench/agency_service.sh "$url")
  export CHISO_AGENCY CHISO_SERVICE
  if [ -n "$EXPORT" ]; then curl -sf "$url/v1/sql" -H 'content-type: application/json' -d '{"sql":"SELECT * FROM dossiers","format":"parquet"}' -o /dev/null; echo "rss after export $(($(ps -o rss= -p $pid)/1024)) MiB"; fi
  ( while :; do curl -sf -o /dev/null "$url/v1/sql" -H 'content-type: application/json' -d "$scan" || sleep 1; done ) & scanner=$!
  if [ -n "$QUERIES" ]; then
    # adhoc.sh's five queries, 8 times each, as its sequence runs them before this phase.
    mapfile -t qs < <(sed -n '/^queries=(/,/^)/p' bench/adhoc.sh | grep '^  "' | sed 's/^  "//; s/"$//')
    for entry in "${qs[@]}"; do
      IFS='|' read -r _ sql _ <<< "$entry"
      body=$(python3 -c 'import json,sys; print(json.dumps({"sql": sys.argv[1]}))' "$sql")
      for i in $(seq 8); do curl -sf -o /dev/null "$url/v1/sql" -H 'content-type: application/json' -d "$body"; done
    done
  fi
  if [ -n "$SAMPLE" ]; then ( while :; do ps -o rss= -p $pid > /dev/null; curl -s --max-time 1 $url/ready > /dev/null; sleep 2; done ) & sampler=$!; fi
  sleep 2
  curl -sf "$url/metrics" > /tmp/ab/metrics-before.txt
  result=$(wrk -t2 -c64 -d15s --latency -s bench/append.lua "$url")
  curl -sf "$url/metrics" > /tmp/ab/metrics-after.txt
  kill $scanner ${sampler:-}; wait $scanner ${sampler:-} 2>/dev/null
  echo "$name: $(echo "$result" | awk '/Requests\/sec/ {print $2}')/s p50 $(echo "$result" | awk '$1 == "50%" {print $2}') p99 $(echo "$result" | awk '$1 == "99%" {print $2}') max $(echo "$result" | awk '$1 == "Latency" {print $4; exit}')"
  echo "  $(python3 bench/log_state.py /tmp/ab/metrics-before.txt /tmp/ab/metrics-after.txt)"
  kill -TERM $pid; wait $pid
done
