#!/usr/bin/env bash
# An A/B of chiso binaries on one data directory (a demo history's, e.g. what bench/demo.sh
# leaves in $CARGO_TARGET_DIR/bench-scratch/demo-data), taking turns three times: p50 of 51
# requests of the 2019 report as JSON and as the printed form, of 21 of "20 most late", and
# the first computation of one month's rankings after the start.
#   bash bench/report_ab.sh DATA_DIR /tmp/chiso-old $CARGO_TARGET_DIR/release/chiso
set -euo pipefail
data=$1; shift
port=17983; url="http://127.0.0.1:$port"
p50() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)] * 1000}'; }
for round in 1 2 3; do
  for bin in "$@"; do
    "$bin" serve --data-dir "$data" --listen "127.0.0.1:$port" 2>/dev/null &
    pid=$!
    until curl -sf "$url/ready" > /dev/null; do sleep 0.05; done
    for i in $(seq 5); do curl -s -o /dev/null "$url/v1/reports/dossiers?from=2019-01-01&to=2019-12-31"; done
    report=$(for i in $(seq 51); do curl -s -o /dev/null -w '%{time_total}\n' "$url/v1/reports/dossiers?from=2019-01-01&to=2019-12-31"; done | p50)
    form=$(for i in $(seq 51); do curl -s -o /dev/null -w '%{time_total}\n' "$url/v1/reports/dossiers?from=2019-01-01&to=2019-12-31&layout=form&province=26"; done | p50)
    q="SELECT id, agency, timeliness FROM dossiers WHERE received_at >= '2019-01-01' AND timeliness = 'late' ORDER BY resolved_at - effective_due_at DESC LIMIT 20"
    late=$(for i in $(seq 21); do curl -s -o /dev/null -w '%{time_total}\n' "$url/v1/sql" --data-urlencode "q=$q" -G; done | p50)
    rank=$("$bin" rank --month 2019-12 --url "$url" | grep -o 'computed in [0-9.]* ms')
    echo "round $round $bin: report p50 $report ms, form $form ms, 20 most late 2019 $late ms, rank 2019-12 $rank"
    kill -TERM $pid; wait $pid || true
  done
done
