#!/usr/bin/env bash
# DESIGN §8: an ad-hoc group-by over ~20 M dossiers, chiso against DuckDB on the same data, in
# one run. The data: `chiso demo --provinces 63 --scale 0.3` (Vĩnh Phúc plus 62 synthetic
# provinces), imported through the catalog into a data directory. chiso answers over HTTP
# (`POST /v1/sql`, JSON, release binary, tables in memory); DuckDB (Python, 2 threads) reads
# the `dossiers` table exported from chiso as Parquet (`format: parquet`), then the same rows
# loaded into a native table. REUSE=1 keeps the data directory of the previous run.
# Results go to stdout and bench/last-adhoc.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/chiso-target}"
PROVINCES=${PROVINCES:-63}
SCALE=${SCALE:-0.3}
RUNS=${RUNS:-7}
scratch="$CARGO_TARGET_DIR/bench-scratch/adhoc"
out=bench/last-adhoc.txt
: > "$out"
say() { echo "$*" | tee -a "$out"; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
now() { date +%s.%N; }

python3 -m pip install -q "duckdb>=1.1,<2"
cargo build --release --bin chiso -q
chiso="$CARGO_TARGET_DIR/release/chiso"
say "# $(date -u +%FT%TZ) $(nproc) cores, $(free -g | awk '/Mem/{print $2}') GiB; duckdb $(python3 -c 'import duckdb; print(duckdb.__version__)')"
url=http://127.0.0.1:17881
serve() {
  CHISO_LOG=warn "$chiso" serve --data-dir "$scratch/data" --listen 127.0.0.1:17881 --sql-max-rows 100000000 &
  pid=$!
  until curl -sf "$url/ready" > /dev/null; do sleep 0.2; done
}
if [ -z "${REUSE:-}" ]; then
rm -rf "$scratch"
mkdir -p "$scratch"

s=$(now)
"$chiso" demo --provinces "$PROVINCES" --scale "$SCALE" --output "$scratch/history.ndjson"
say "generate --provinces $PROVINCES --scale $SCALE: $(wc -l < "$scratch/history.ndjson") events in $(echo "$(now) - $s" | bc) s"
s=$(now)
CHISO_LOG=warn "$chiso" import --data-dir "$scratch/data" "$scratch/history.ndjson"
say "import (validated, fsynced): $(echo "$(now) - $s" | bc) s"
rm "$scratch/history.ndjson"

# First start folds the whole log into the tables; SIGTERM saves them as segments.
s=$(now)
serve
say "tables folded from the log: $(echo "$(now) - $s" | bc) s"
kill -TERM $pid; wait $pid
fi
s=$(now)
serve
say "restart until ready: $(echo "$(now) - $s" | bc) s"
trap 'kill $pid 2>/dev/null || true' EXIT

query="SELECT province, channel, timeliness, count(*) AS dossiers, avg(paused_seconds) AS avg_paused_seconds, sum(CASE WHEN paid_online THEN 1 ELSE 0 END) AS paid_online FROM dossiers GROUP BY province, channel, timeliness ORDER BY province, channel, timeliness"
body=$(python3 -c 'import json,sys; print(json.dumps({"sql": sys.argv[1]}))' "$query")
count=$(curl -sf "$url/v1/sql" -H 'content-type: application/json' -d '{"sql":"SELECT count(*) AS n FROM dossiers"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["n"])')
say "dossiers: $count"
say "query: $query"
curl -sf "$url/v1/sql" -H 'content-type: application/json' -d "$body" > "$scratch/chiso-answer.json"
times=()
for _ in $(seq "$RUNS"); do
  times+=("$(curl -sf -o /dev/null -w '%{time_total}' "$url/v1/sql" -H 'content-type: application/json' -d "$body")")
done
chiso_ms=$(printf '%s\n' "${times[@]}" | median | awk '{printf "%.1f", $1 * 1000}')
say "chiso (HTTP, JSON answer): p50 $chiso_ms ms (runs: ${times[*]} s)"

s=$(now)
curl -sf "$url/v1/sql" -H 'content-type: application/json' -d '{"sql":"SELECT * FROM dossiers","format":"parquet"}' -o "$scratch/dossiers.parquet"
say "export of dossiers as Parquet over HTTP: $(du -h "$scratch/dossiers.parquet" | cut -f1) in $(echo "$(now) - $s" | bc) s"
kill -TERM $pid; wait $pid || true

python3 - "$scratch/dossiers.parquet" "$query" "$RUNS" "$scratch/chiso-answer.json" <<'PY' | tee -a "$out"
import duckdb, json, statistics, sys, time
exported, query, runs, answer = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
con = duckdb.connect()
con.execute("SET threads = 2")
con.execute(f"CREATE VIEW dossiers AS SELECT * FROM read_parquet('{exported}')")
def timed(label):
    con.execute(query).fetchall()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        rows = con.execute(query).fetchall()
        samples.append(time.perf_counter() - started)
    print(f"duckdb {label}: p50 {statistics.median(samples) * 1000:.1f} ms (runs: {' '.join(f'{s:.4f}' for s in samples)} s)")
    return rows
rows = timed("over the Parquet file")
con.execute("CREATE TABLE native AS SELECT * FROM dossiers")
con.execute("DROP VIEW dossiers")
con.execute("ALTER TABLE native RENAME TO dossiers")
timed("native table (loaded from it)")
chiso = json.load(open(answer))
same = len(chiso) == len(rows) and all(
    (c["province"], c["channel"], c["timeliness"], c["dossiers"]) == (r[0], r[1], r[2], r[3])
    for c, r in zip(chiso, rows))
print(f"answers: {len(rows)} groups; chiso and duckdb agree on every group's count: {same}")
PY
