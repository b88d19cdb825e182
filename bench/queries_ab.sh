#!/usr/bin/env bash
# A/B of the five ad-hoc queries of bench/adhoc.sh: each argument is binary:data-directory;
# ROUNDS turns (default 3) of each pair in order, p50 of 11 runs per query over HTTP, and the
# md5 of each answer in /tmp/ab/ans-<binary>-<query> to compare. Usage:
#   ROUNDS="1 2" bash bench/queries_ab.sh /tmp/chiso-a:$DATA /tmp/chiso-b:$DATA
mkdir -p /tmp/ab
cd "$(dirname "$0")/.."
port=17991; url=http://127.0.0.1:$port
mapfile -t qs < <(sed -n '/^queries=(/,/^)/p' bench/adhoc.sh | grep '^  "' | sed 's/^  "//; s/"$//')
p50() { sort -n | awk '{a[NR]=$1} END {printf "%.1f", a[int((NR+1)/2)] * 1000}'; }
for round in ${ROUNDS:-1 2 3}; do
  for pair in "$@"; do
    bin=${pair%%:*}; data=${pair#*:}
    "$bin" serve --data-dir "$data" --listen 127.0.0.1:$port 2>/dev/null & pid=$!
    until curl -sf $url/ready >/dev/null; do sleep 0.05; done
    line="round $round $(basename $bin):"
    for entry in "${qs[@]}"; do
      IFS='|' read -r name sql _ <<< "$entry"
      body=$(python3 -c 'import json,sys; print(json.dumps({"sql": sys.argv[1]}))' "$sql")
      curl -sf "$url/v1/sql" -H 'content-type: application/json' -d "$body" | md5sum | cut -c1-6 > /tmp/ab/ans-$(basename $bin)-${name// /_}
      t=$(for i in $(seq 11); do curl -sf -o /dev/null -w '%{time_total}\n' "$url/v1/sql" -H 'content-type: application/json' -d "$body"; done | p50)
      line="$line | $name $t"
    done
    r=$(for i in $(seq 11); do curl -s -o /dev/null -w '%{time_total}\n' "$url/v1/reports/dossiers?from=2019-01-01&to=2019-12-31&province=26"; done | p50)
    echo "$line | report 26 $r"
    kill -TERM $pid; wait $pid
  done
done
for f in /tmp/ab/ans-*; do echo "$(basename $f) $(cat $f)"; done | sort -t- -k3
