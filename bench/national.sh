#!/usr/bin/env bash
# Issue #13: the log at national scale, as a user runs it. The history `chiso demo --provinces
# $PROVINCES --scale $SCALE` (default 63 and 1: the national decade) is streamed from a pipe into
# a running release `chiso serve` by a separate client (`chiso demo | chiso import --url … -`; no
# file of the whole history is written), with the fold, the indexer, the sealer and the
# scheduler running and the default settings. Recorded, in bench/last-national.txt:
#   - the server's resident set and the log's head every SAMPLE_SECONDS (2) from outside, through
#     the load and everything after it: the peak per phase;
#   - the ingest rate in windows of WINDOW (10 M) events, first to last, and the share of the two
#     cores the generator and the client took (their CPU time over the load's wall time);
#   - PostgreSQL 15 (`bench/pg.sh`, fsync on) `COPY` of the history's first WINDOW events into the
#     log as a table (`bench/pg_schema.sql`: unique id, unique (stream, revision)), in the same
#     run, and its size on disk against chiso's log for the same number of events;
#   - `bench/adhoc.sh` on the data as loaded (REUSE=1): restart after SIGTERM, the five ad-hoc
#     queries against DuckDB, `dossier_report`, append → visible, 64 clients under a scan,
#     rebuild by replay;
#   - restart until `/ready` after a SIGKILL taken while NDJSON batches were being appended
#     (with `chiso_log_replayed_at_open`);
#   - 64 concurrent single appends on that data (wrk), and pgbench's one-row INSERTs on the
#     loaded PostgreSQL, in the same run.
# CHISO=path runs that binary unbuilt. KEEP=1 leaves the data directory for another run;
# REUSE=1 runs on it again from step 2, with the load's figures of the run that made it.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/chiso-target}"
PROVINCES=${PROVINCES:-63}
SCALE=${SCALE:-1}
WINDOW=${WINDOW:-10000000}
SAMPLE_SECONDS=${SAMPLE_SECONDS:-2}
# The data directory is adhoc.sh's, so that it runs its queries on it afterwards.
scratch="$CARGO_TARGET_DIR/bench-scratch/adhoc"
out=bench/last-national.txt
: > "$out"
say() { echo "$*" | tee -a "$out"; }
now() { date +%s.%N; }

for p in wrk bc; do
  command -v "$p" > /dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$p"; }
done
if [ -z "${CHISO:-}" ]; then
  cargo build --release --bin chiso -q
fi
chiso="${CHISO:-$CARGO_TARGET_DIR/release/chiso}"
port=17881
url=http://127.0.0.1:$port
if [ -z "${REUSE:-}" ]; then
  rm -rf "$scratch"
  mkdir -p "$scratch"
fi
say "# $(date -u +%FT%TZ) $(nproc) cores, $(free -g | awk '/Mem/{print $2}') GiB; chiso demo --provinces $PROVINCES --scale $SCALE into $chiso serve (default settings)"

set_phase() { echo "$1" > "$scratch/phase"; }
log_head() { curl -s --max-time 1 "$url/ready" | python3 -c 'import json,sys; print(json.load(sys.stdin)["log_head"])'; }
# Every SAMPLE_SECONDS: time, phase, resident MiB, log head (empty while the server is down).
sample() {
  while kill -0 "$pid" 2>/dev/null; do
    head=$(log_head 2>/dev/null || true)
    echo "$(date +%s.%N) $(cat "$scratch/phase") $(($(ps -o rss= -p "$pid" 2>/dev/null || echo 0) / 1024)) $head" >> "$scratch/samples.txt"
    sleep "$SAMPLE_SECONDS"
  done
}
# Every GAUGE_SECONDS (20): the components of the server's memory from its own gauges, to
# say where the resident set goes (summed up after the load).
GAUGES="chiso_log_block_cache_bytes chiso_log_memtable_bytes chiso_log_table_readers_bytes chiso_tables_memory_bytes"
gauges() {
  while kill -0 "$pid" 2>/dev/null; do
    values=$(curl -s --max-time 2 "$url/metrics" | awk -v names="$GAUGES" '
      BEGIN {n = split(names, want, " ")} {v[$1] = $2}
      END {for (i = 1; i <= n; i++) printf " %d", v[want[i]] / 1048576}' || true)
    [ -n "$values" ] && echo "$(date +%s.%N) $(cat "$scratch/phase") $(($(ps -o rss= -p "$pid" 2>/dev/null || echo 0) / 1024))$values" >> "$scratch/gauges.txt"
    sleep "${GAUGE_SECONDS:-20}"
  done
}
serve() {
  echo "# $(date -u +%FT%TZ) $(cat "$scratch/phase")" >> "$scratch/server.log"
  CHISO_LOG=info "$chiso" serve --data-dir "$scratch/data" --listen "127.0.0.1:$port" 2>> "$scratch/server.log" &
  pid=$!
  sample &
  gauges &
}
peak() { awk -v p="$1" '$2 == p && $3 > m {m = $3} END {print m + 0}' "$scratch/samples.txt"; }
ready() { until curl -sf "$url/ready" > /dev/null; do sleep 0.05; done; }
trap 'kill $pid 2>/dev/null || true' EXIT

# 1. The load, timed; the generator's and the client's CPU time from their own `time`.
if [ -z "${REUSE:-}" ]; then
  : > "$scratch/samples.txt"; : > "$scratch/gauges.txt"; : > "$scratch/server.log"
  set_phase load
  serve
  until curl -sf "$url/health" > /dev/null; do sleep 0.1; done
  s=$(now)
  echo "$s" > "$scratch/load-start"
  ( TIMEFORMAT='generator %U %S'; time "$chiso" demo --provinces "$PROVINCES" --scale "$SCALE" ) 2> "$scratch/demo-cpu.txt" \
    | ( TIMEFORMAT='client %U %S'; time CHISO_LOG=warn "$chiso" import --url "$url" - 2> /dev/null ) 2> "$scratch/client-cpu.txt"
  loaded=$(echo "$(now) - $s" | bc)
  echo "$loaded" > "$scratch/load-seconds"
  set_phase fold
  ready
  caught=$(echo "$(now) - $s - $loaded" | bc)
  events=$(log_head)
  say "load: $events events in $loaded s ($(echo "$events / $loaded" | bc) events/s overall); tables caught up $caught s later"
else
  s=$(cat "$scratch/load-start"); loaded=$(cat "$scratch/load-seconds")
  set_phase reopen
  serve
  ready
  events=$(log_head)
  say "reused: $events events, loaded by an earlier run in $loaded s"
fi
python3 - "$scratch/samples.txt" "$s" "$WINDOW" "$loaded" "$scratch/demo-cpu.txt" "$scratch/client-cpu.txt" <<'PY' | tee -a "$out"
import sys
path, start, window, wall = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
points = [(float(t), int(h[0])) for t, phase, rss, *h in (l.split() for l in open(path))
          if phase == "load" and h and h[0].isdigit()]
points.insert(0, (start, 0))
# When the head crossed each multiple of the window (linear between samples).
def crossing(target):
    for (t0, h0), (t1, h1) in zip(points, points[1:]):
        if h0 < target <= h1:
            return t0 + (t1 - t0) * (target - h0) / (h1 - h0)
rates, edge = [], 0
while True:
    t0, t1 = crossing(edge) if edge else start, crossing(edge + window)
    if t0 is None or t1 is None:
        break
    rates.append(window / (t1 - t0))
    edge += window
print(f"ingest by windows of {window:,} events: " + ", ".join(f"{r:,.0f}" for r in rates) + " events/s")
if rates:
    print(f"  slowest window {min(rates):,.0f} events/s, fastest {max(rates):,.0f}")
for name in sys.argv[5:7]:
    who, user, system = open(name).read().split()[-3:]
    print(f"  {who}: {float(user) + float(system):.0f} s of CPU over {wall:.0f} s ({(float(user) + float(system)) / wall * 100:.0f} % of one core)")
PY
say "resident set: peak $(peak load) MiB while loading, $(peak fold) MiB while the tables caught up"
python3 - "$scratch/gauges.txt" $GAUGES <<'PY' | tee -a "$out"
import sys
names = [n.removeprefix("chiso_").removesuffix("_bytes") for n in sys.argv[2:]]
rows = [l.split() for l in open(sys.argv[1])]
# A sample whose /metrics timed out reads as zeros: left out.
rows = [(r[1], int(r[2]), [int(x) for x in r[3:]]) for r in rows if len(r) == 3 + len(names)]
rows = [r for r in rows if any(r[2])]
load = [r for r in rows if r[0] == "load"]
if load:
    print("memory while loading, MiB (the server's gauges every 20 s): " + ", ".join(
        f"{n} max {max(r[2][i] for r in load)}" for i, n in enumerate(names)))
    rss, _, values = max((r[1], i, r[2]) for i, r in enumerate(load))
    print(f"  at the sampled peak of {rss} MiB resident: " + ", ".join(
        f"{n} {v}" for n, v in zip(names, values)) + f"; the rest {rss - sum(values)}")
PY
du -sh "$scratch/data/log" "$scratch/data/tables" | tee -a "$out"
log_bytes=$(du -sb "$scratch/data/log" | cut -f1)

# 2. The ad-hoc queries and the rest of issue #12's figures, on this data directory as loaded
# (before the steps below add dossiers of their own, which the report would count).
set_phase stop
kill -TERM "$pid"; wait "$pid" || true
REUSE=1 CHISO="$chiso" bash bench/adhoc.sh | sed 's/^/adhoc: /' | tee -a "$out"
set_phase reopen
serve
ready

# 3. Restart after a SIGKILL taken while NDJSON batches of new dossiers were being appended.
python3 bench/kill_batches.py "$url" 1000000 > "$scratch/extra.ndjson"
set_phase kill
CHISO_LOG=warn "$chiso" import --url "$url" "$scratch/extra.ndjson" > /dev/null 2>&1 &
importer=$!
sleep 2
before=$(log_head)
kill -KILL "$pid"; wait "$pid" 2>/dev/null || true
wait $importer 2>/dev/null || true
set_phase restart_kill
s=$(now)
serve
ready
say "restart after SIGKILL under NDJSON batches (head $before when killed): ready in $(echo "$(now) - $s" | bc) s, $(curl -s "$url/metrics" | awk '/^chiso_log_replayed_at_open /{print $2}') events replayed into the write model"

# 4. 64 concurrent single appends on this data.
set_phase wrk
read -r CHISO_AGENCY CHISO_SERVICE < <(bash bench/agency_service.sh "$url")
export CHISO_AGENCY CHISO_SERVICE
curl -sf "$url/metrics" > "$scratch/metrics-before.txt"
result=$(wrk -t2 -c64 -d20s --latency -s bench/append.lua "$url")
curl -sf "$url/metrics" > "$scratch/metrics-after.txt"
say "chiso: 64 clients (wrk, 20 s), one validated DossierReceived a request: $(echo "$result" | awk '/Requests\/sec/ {print $2}') events/s, p50 $(echo "$result" | awk '$1 == "50%" {print $2}'), p99 $(echo "$result" | awk '$1 == "99%" {print $2}')$(echo "$result" | grep -q Non-2xx && echo ' (some refused)')"
say "  $(python3 bench/log_state.py "$scratch/metrics-before.txt" "$scratch/metrics-after.txt")"
say "resident set: peak $(peak restart_kill) MiB after the restart, $(peak wrk) MiB under 64 clients"
set_phase stop
kill -TERM "$pid"; wait "$pid" || true

# 5. PostgreSQL: COPY of the history's first WINDOW events (the generator is seeded: the same
# events), converted to CSV beforehand so that only the COPY is timed; then pgbench on it.
(
  source bench/pg.sh
  $psql -f bench/pg_schema.sql
  { "$chiso" demo --provinces "$PROVINCES" --scale "$SCALE" 2> /dev/null || true; } | head -n "$WINDOW" | python3 -c '
import csv, json, sys
revisions, out = {}, csv.writer(sys.stdout)
for line in sys.stdin:
    e = json.loads(line)
    r = revisions.get(e["stream"], 0)
    revisions[e["stream"]] = r + 1
    out.writerow([e["stream"], r, e["id"], e["type"], json.dumps(e["data"], ensure_ascii=False),
                  json.dumps(e.get("metadata") or {}, ensure_ascii=False)])
' > "$scratch/sample.csv"
  rows=$(wc -l < "$scratch/sample.csv")
  s=$(now)
  $psql -c "\\copy events (stream, revision, id, type, data, metadata) FROM '$scratch/sample.csv' WITH (FORMAT csv)"
  took=$(echo "$(now) - $s" | bc)
  size=$($psql -At -c "SELECT pg_total_relation_size('events')")
  rm -f "$scratch/sample.csv"
  say "postgresql 15: COPY of the first $rows events (one transaction, fsync on): $took s, $(echo "$rows / $took" | bc) rows/s; table with its indexes $((size / 1048576)) MiB"
  say "size on disk for $rows events: chiso's log $((log_bytes * rows / events / 1048576)) MiB (pro rata of $((log_bytes / 1048576)) MiB for $events), PostgreSQL $((size / 1048576)) MiB"
  logdir=$(mktemp -d "$scratch/pglog-XXXX")
  result=$(cd "$logdir" && pgbench -h 127.0.0.1 -p 15432 -U postgres -n -c64 -j2 -T20 -l -f "$OLDPWD/bench/pg_append.sql" postgres)
  p50=$(cat "$logdir"/pgbench_log.* | awk '{print $3/1000}' | sort -n | awk '{a[NR]=$1} END {print a[int(NR*0.5)]}')
  p99=$(cat "$logdir"/pgbench_log.* | awk '{print $3/1000}' | sort -n | awk '{a[NR]=$1} END {print a[int(NR*0.99)]}')
  rm -rf "$logdir"
  say "postgresql 15: 64 clients (pgbench, 20 s) on those rows, one-row INSERT transactions: $(echo "$result" | awk -F'= ' '/^tps/{split($2,a," "); print a[1]}') rows/s, p50 ${p50}ms, p99 ${p99}ms"
)

say "resident set of the whole run: peak $(awk '$3 > m {m = $3} END {print m + 0}' "$scratch/samples.txt") MiB (load and restarts; adhoc.sh's phases are in its own lines)"
[ -n "${KEEP:-}" ] || rm -rf "$scratch"
