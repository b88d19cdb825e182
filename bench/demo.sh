#!/usr/bin/env bash
# The demo history (issue #5): generate it, load it with `chiso serve --demo` (release), the
# size on disk, the rankings of all months, one month's ranking computation, the queries, and
# a restart; then PostgreSQL 15 loading the same events with COPY (same constraints as
# bench/pg_schema.sql). Results go to stdout and bench/last-demo-run.txt (OUT=file for
# another). CHISO=binary measures that build instead of building the release one (an A/B:
# run it once per binary).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/chiso-target}"
scratch="$CARGO_TARGET_DIR/bench-scratch"
mkdir -p "$scratch"
out=${OUT:-bench/last-demo-run.txt}
: > "$out"
say() { echo "$*" | tee -a "$out"; }
now() { date +%s.%N; }
if [ -z "${CHISO:-}" ]; then cargo build --release --bin chiso -q; fi
bin="${CHISO:-$CARGO_TARGET_DIR/release/chiso}"
data="$scratch/demo-data"; history="$scratch/demo.ndjson"; port=17979; url="http://127.0.0.1:$port"
rm -rf "$data" "$history"
say "# $bin"
say "# $(date -u +%FT%TZ) $(nproc) cores, $(free -g | awk '/Mem/{print $2}') GiB, $(uname -r)"

s=$(now); "$bin" demo --output "$history"; e=$(now)
events=$(wc -l < "$history")
say "generate: $events events, $(du -h "$history" | cut -f1) of NDJSON in $(echo "$e - $s" | bc) s: $(echo "$events / ($e - $s)" | bc) events/s"

s=$(now)
CHISO_LOG=info "$bin" serve --demo --data-dir "$data" --listen "127.0.0.1:$port" 2> "$scratch/demo-serve.log" &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
until curl -sf "$url/ready" > /dev/null; do sleep 0.2; done
e=$(now)
say "serve --demo: $(grep -o 'events_per_second=[0-9]*' "$scratch/demo-serve.log" | cut -d= -f2) events/s appended (validated, fsynced, 5 000 a batch); ready (tables caught up) $(echo "$e - $s" | bc) s after start"
until [ "$(curl -s "$url/v1/sql" --data-urlencode 'q=SELECT count(DISTINCT month) AS n FROM rankings' -G)" = '[{"n":120}]' ]; do sleep 0.2; done
say "rankings of all 120 months published by the scheduler $(echo "$(now) - $e" | bc) s after ready"
for m in 2019-12 2019-06 2015-03; do say "chiso rank --month $m: $("$bin" rank --month $m --url "$url")"; done
p50() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)] * 1000}'; }
say "dossier_report 2019 over HTTP (JSON, one row per agency): p50 $(for i in $(seq 11); do curl -s -o /dev/null -w '%{time_total}\n' "$url/v1/reports/dossiers?from=2019-01-01&to=2019-12-31"; done | p50) ms (11 runs)"
q="SELECT date_trunc('month', d.day) AS month, a.kind, sum(d.resolved_early + d.resolved_on_time) * 1.0 / sum(d.resolved) AS on_time_rate FROM agency_daily d JOIN agencies a ON a.code = d.agency WHERE d.day BETWEEN DATE '2019-01-01' AND DATE '2019-12-31' GROUP BY 1, 2 ORDER BY 1, 2"
say "monthly on-time rate by agency kind, 2019, over HTTP: p50 $(for i in $(seq 11); do curl -s -o /dev/null -w '%{time_total}\n' "$url/v1/sql" --data-urlencode "q=$q" -G; done | p50) ms (11 runs)"
kill -TERM $pid; wait $pid || true
say "on disk: $(du -sh "$data" | cut -f1) (log $(du -sh "$data/log" | cut -f1), table segments $(du -sh "$data/tables" | cut -f1))"
s=$(now)
"$bin" serve --data-dir "$data" --listen "127.0.0.1:$port" 2>/dev/null &
pid=$!
until curl -sf "$url/ready" > /dev/null; do sleep 0.05; done
say "restart until ready (segments loaded, write model restored): $(echo "$(now) - $s" | bc) s"
kill -TERM $pid; wait $pid || true

source bench/pg.sh
$psql -f bench/pg_schema.sql
python3 - "$history" "$scratch/demo.csv" <<'PY'
import csv, json, sys
revisions = {}
with open(sys.argv[1]) as src, open(sys.argv[2], "w", newline="") as dst:
    out = csv.writer(dst)
    for line in src:
        e = json.loads(line)
        r = revisions.get(e["stream"], 0); revisions[e["stream"]] = r + 1
        out.writerow([e["stream"], r, e["id"], e["type"], json.dumps(e["data"], ensure_ascii=False), json.dumps(e.get("metadata", {}))])
PY
s=$(now)
$psql -c "\\copy events (stream, revision, id, type, data, metadata) FROM '$scratch/demo.csv' WITH (FORMAT csv)"
e=$(now)
say "postgresql 15: COPY of the same $events events in one transaction (unique ids, unique stream revisions, fsync on): $(echo "$events / ($e - $s)" | bc) rows/s, $(echo "$e - $s" | bc) s; table + indexes $($psql -At -c "SELECT pg_size_pretty(pg_total_relation_size('events'))")"
rm -f "$scratch/demo.csv"
