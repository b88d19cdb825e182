#!/usr/bin/env bash
# Issue #14: what a large SQL answer costs on the wire, by format and compression, with
# PostgreSQL serving the same rows as CSV in the same run. The data: `chiso demo --provinces 63
# --scale $SCALE` streamed into a release `chiso serve` by `chiso import --url` (the fold,
# sealing, the scheduler running). Then `SELECT * FROM dossiers LIMIT $ROWS` fetched by curl
# from loopback: CSV plain, `Accept-Encoding: gzip` and `zstd`; Arrow plain and with
# `compression=zstd` / `lz4`; JSON plain and gzip — bytes on the wire, and the median time to
# the last byte of RUNS (the client does not decode; `decoded` is the client's own time to
# decode the compressed answer, measured apart). PostgreSQL 15 loads the plain CSV and serves
# it back with `\copy (SELECT …) TO STDOUT CSV HEADER` through psql. Results: stdout and
# bench/last-answers.txt. CHISO=path runs that binary unbuilt.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/chiso-target}"
SCALE=${SCALE:-0.02}
ROWS=${ROWS:-1000000}
RUNS=${RUNS:-5}
scratch="$CARGO_TARGET_DIR/bench-scratch/answers"
out=bench/last-answers.txt
: > "$out"
say() { echo "$*" | tee -a "$out"; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
if [ -z "${CHISO:-}" ]; then
  cargo build --release --bin chiso -q
fi
chiso="${CHISO:-$CARGO_TARGET_DIR/release/chiso}"
rm -rf "$scratch"; mkdir -p "$scratch"
port=17883; url=http://127.0.0.1:$port
CHISO_LOG=warn "$chiso" serve --data-dir "$scratch/data" --listen 127.0.0.1:$port &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$scratch"' EXIT
until curl -sf "$url/health" > /dev/null; do sleep 0.2; done
"$chiso" demo --provinces 63 --scale "$SCALE" | CHISO_LOG=warn "$chiso" import --url "$url" - 2>/dev/null
until curl -sf "$url/ready" > /dev/null; do sleep 0.5; done
say "# $(date -u +%FT%TZ) $(nproc) cores; chiso demo --provinces 63 --scale $SCALE: $(curl -sf "$url/ready")"
sql="SELECT * FROM dossiers LIMIT $ROWS"
q=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1]))' "$sql")

# One variant: median seconds to the last byte and bytes on the wire.
fetch() {
  local label=$1 query=$2 encoding=$3 times=() size
  for _ in $(seq "$RUNS"); do
    read -r t size < <(curl -sf "$url/v1/sql?q=$q&$query" -H "accept-encoding: $encoding" \
      -o "$scratch/answer" -w '%{time_total} %{size_download}\n')
    times+=("$t")
  done
  local decoded=""
  case $encoding in
    gzip) decoded=$( { /usr/bin/time -f %e gzip -dc < "$scratch/answer" > /dev/null; } 2>&1 ) ;;
    zstd) decoded=$( { /usr/bin/time -f %e zstd -dcq < "$scratch/answer" > /dev/null; } 2>&1 ) ;;
  esac
  printf '%-28s %12d bytes  %7.3f s%s\n' "$label" "$size" "$(printf '%s\n' "${times[@]}" | median)" \
    "${decoded:+  (decoded by the client in $decoded s)}" | tee -a "$out"
}
command -v zstd > /dev/null || apt-get install -y -q zstd > /dev/null
fetch "csv" "format=csv" identity
cp "$scratch/answer" "$scratch/dossiers.csv"
fetch "csv, gzip" "format=csv" gzip
fetch "csv, zstd" "format=csv" zstd
fetch "json" "format=json" identity
fetch "json, gzip" "format=json" gzip
fetch "json, zstd" "format=json" zstd
fetch "arrow" "format=arrow" identity
fetch "arrow, compression=lz4" "format=arrow&compression=lz4" identity
fetch "arrow, compression=zstd" "format=arrow&compression=zstd" identity
fetch "parquet" "format=parquet" identity
fetch "parquet, compression=zstd" "format=parquet&compression=zstd" identity
rows=$(($(wc -l < "$scratch/dossiers.csv") - 1))
kill -TERM $pid; wait $pid || true

source bench/pg.sh
load_dossiers "$scratch/dossiers.csv"
times=()
for _ in $(seq "$RUNS"); do
  s=$(date +%s.%N)
  $psql -c "\\copy (SELECT * FROM dossiers) TO '$scratch/pg.csv' WITH (FORMAT csv, HEADER)"
  times+=("$(echo "$(date +%s.%N) - $s" | bc)")
done
printf '%-28s %12d bytes  %7.3f s\n' "PostgreSQL csv (psql \\copy)" "$(stat -c %s "$scratch/pg.csv")" \
  "$(printf '%s\n' "${times[@]}" | median)" | tee -a "$out"
say "rows: $rows"
