#!/usr/bin/env bash
# Issue #14: a million `dossiers` rows fetched by client programs, chiso against PostgreSQL in
# the same run. The data: `chiso demo --provinces 63 --scale $SCALE` streamed into a release
# `chiso serve` by `chiso import --url` (the fold, sealing, the scheduler running). Then
# `SELECT * FROM dossiers LIMIT $ROWS`, RUNS times each, median seconds to the last row
# decoded (bench/fetch.py): over chiso's PostgreSQL protocol with psycopg 3 `fetchall()`
# (text and binary results); over Flight SQL with ADBC (`fetch_arrow_table`) and pyarrow's
# Flight client (`read_all`); over HTTP Arrow (`format=arrow`) into polars. PostgreSQL 15 loads
# the same rows and serves them to the same psycopg calls. Results: stdout and
# bench/last-clients.txt. CHISO=path runs that binary unbuilt.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/chiso-target}"
SCALE=${SCALE:-0.02}
ROWS=${ROWS:-1000000}
RUNS=${RUNS:-5}
scratch="$CARGO_TARGET_DIR/bench-scratch/clients"
out=bench/last-clients.txt
: > "$out"
say() { echo "$*" | tee -a "$out"; }
if [ -z "${CHISO:-}" ]; then
  cargo build --release --bin chiso -q
fi
chiso="${CHISO:-$CARGO_TARGET_DIR/release/chiso}"
python3 -m pip install -q --root-user-action=ignore --disable-pip-version-check -r tests/clients/requirements.txt
rm -rf "$scratch"; mkdir -p "$scratch"
port=17884; pg_port=17885; flight_port=17886; url=http://127.0.0.1:$port
CHISO_LOG=warn "$chiso" serve --data-dir "$scratch/data" --listen 127.0.0.1:$port \
  --pg-listen 127.0.0.1:$pg_port --flight-listen 127.0.0.1:$flight_port --sql-max-rows 100000000 &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$scratch"' EXIT
until curl -sf "$url/health" > /dev/null; do sleep 0.2; done
"$chiso" demo --provinces 63 --scale "$SCALE" | CHISO_LOG=warn "$chiso" import --url "$url" - 2>/dev/null
until curl -sf "$url/ready" > /dev/null; do sleep 0.5; done
say "# $(date -u +%FT%TZ) $(nproc) cores; chiso demo --provinces 63 --scale $SCALE: $(curl -sf "$url/ready")"
sql="SELECT * FROM dossiers LIMIT $ROWS"
say "# $sql; median of $RUNS runs, seconds to the last row decoded by the client"
row() { printf '%-46s %8s s  %s rows\n' "$1" $2 | tee -a "$out"; }
chiso_dsn="host=127.0.0.1 port=$pg_port dbname=chiso user=chiso"
row "chiso, Flight SQL, ADBC into Arrow" "$(python3 bench/fetch.py adbc "grpc://127.0.0.1:$flight_port" "$sql" "$RUNS")"
row "chiso, Flight SQL, pyarrow.flight into Arrow" "$(python3 bench/fetch.py flight "grpc://127.0.0.1:$flight_port" "$sql" "$RUNS")"
row "chiso, HTTP Arrow into polars" "$(python3 bench/fetch.py http-arrow "$url" "$sql" "$RUNS")"
row "chiso, PostgreSQL protocol, psycopg text" "$(python3 bench/fetch.py pg "$chiso_dsn" "$sql" text "$RUNS")"
row "chiso, PostgreSQL protocol, psycopg binary" "$(python3 bench/fetch.py pg "$chiso_dsn" "$sql" binary "$RUNS")"
rss=$(awk '/VmHWM/ {print int($2 / 1024)}' /proc/$pid/status)
say "# chiso's peak resident set over the run: $rss MiB"
curl -sf "$url/v1/sql?format=csv" --data-urlencode "q=$sql" -G -o "$scratch/dossiers.csv"
kill -TERM $pid; wait $pid || true

source bench/pg.sh
load_dossiers "$scratch/dossiers.csv"
pg_dsn="host=127.0.0.1 port=15432 dbname=postgres user=postgres"
row "PostgreSQL 15, psycopg text" "$(python3 bench/fetch.py pg "$pg_dsn" "$sql" text "$RUNS")"
row "PostgreSQL 15, psycopg binary" "$(python3 bench/fetch.py pg "$pg_dsn" "$sql" binary "$RUNS")"
rm -rf "$scratch"
