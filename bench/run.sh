#!/usr/bin/env bash
# Log benchmarks with their peers in one run (issue #2, ARCHITECTURE.md §8):
#   1. cargo bench --bench log: the machine's fsync and write speed, store batches, NDJSON
#   2. 64 concurrent single-event appends to the release `chiso serve` (wrk), then the same
#      load as one-row transactions to PostgreSQL (pgbench), same constraints, fsync on
#   3. 10 000-event NDJSON batches vs PostgreSQL COPY of 10 000 rows
# Everything listens on 127.0.0.1 only. Results go to stdout and bench/last-run.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/chiso-target}"
RUNS=${RUNS:-3}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
PGBIN=/usr/lib/postgresql/15/bin
scratch="$CARGO_TARGET_DIR/bench-scratch"
mkdir -p "$scratch"
out=bench/last-run.txt
: > "$out"
say() { echo "$*" | tee -a "$out"; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

for p in wrk; do
  dpkg -s "$p" >/dev/null 2>&1 || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$p"; }
done

say "# $(date -u +%FT%TZ) $(nproc) cores, $(free -g | awk '/Mem/{print $2}') GiB, $(uname -r)"
cargo build --release --bin chiso -q
if [ -z "${ONLY_PEERS:-}" ]; then
CHISO_BENCH_DIR="$scratch" cargo bench --bench log -q 2>/dev/null | tee -a "$out"


# --- chiso: 64 clients, one event per request -------------------------------------------
data=$(mktemp -d "$scratch/chiso-XXXX")
CHISO_LOG=warn "$CARGO_TARGET_DIR/release/chiso" serve --data-dir "$data" --listen 127.0.0.1:17878 &
chiso_pid=$!
trap 'kill $chiso_pid 2>/dev/null || true' EXIT
until curl -sf http://127.0.0.1:17878/health >/dev/null; do sleep 0.1; done
# The agency and service that bench/append.lua's dossiers refer to (the catalog checks them).
curl -sf -X POST http://127.0.0.1:17878/v1/streams/agency-000.00.31.H56 -d '{"events":[{"id":"00000000-0000-4000-8000-000000000001","type":"AgencyRegistered","data":{"code":"000.00.31.H56","name":"Sở Xây dựng","kind":"department","parent":null,"province":"26"}}]}' >/dev/null
curl -sf -X POST http://127.0.0.1:17878/v1/streams/service-1.011442.000.00.00.H56 -d '{"events":[{"id":"00000000-0000-4000-8000-000000000002","type":"ServiceLaunched","data":{"code":"1.011442.000.00.00.H56","agency":"000.00.31.H56","name":"Cấp giấy phép xây dựng","field":"Xây dựng","level":4,"at":"2019-01-02T08:00:00+07:00"}}]}' >/dev/null
rates=(); p50s=(); p99s=()
for run in $(seq "$RUNS"); do
  result=$(wrk -t2 -c64 -d"${SECONDS_PER_RUN}s" --latency -s bench/append.lua http://127.0.0.1:17878)
  if echo "$result" | grep -q "Non-2xx"; then echo "$result"; echo "chiso refused requests"; exit 1; fi
  rates+=("$(echo "$result" | awk '/Requests\/sec/{print $2}')")
  p50s+=("$(echo "$result" | awk '$1=="50%"{print $2}')")
  p99s+=("$(echo "$result" | awk '$1=="99%"{print $2}')")
done
fsyncs=$(curl -s http://127.0.0.1:17878/metrics | awk '/^chiso_log_fsync_batches_total/{print $2}')
events=$(curl -s http://127.0.0.1:17878/metrics | awk '/^chiso_log_events_appended_total/{print $2}')
kill $chiso_pid; wait $chiso_pid || true
fi
[ -n "${ONLY_PEERS:-}" ] || say "chiso: 64 clients (wrk), one DossierReceived a request, validated, fsynced: $(printf '%s\n' "${rates[@]}" | median) events/s, p50 $(printf '%s\n' "${p50s[@]}" | median), p99 $(printf '%s\n' "${p99s[@]}" | median) (median of $RUNS runs of ${SECONDS_PER_RUN}s; runs: ${rates[*]}; $(awk -v e="$events" -v f="$fsyncs" 'BEGIN{printf "%.1f", e/f}') events per fsync)"

# --- PostgreSQL: same load as one-row transactions -------------------------------------
source bench/pg.sh
$psql -f bench/pg_schema.sql
rates=(); p50s=(); p99s=()
for run in $(seq "$RUNS"); do
  logdir=$(mktemp -d "$scratch/pglog-XXXX")
  result=$(cd "$logdir" && pgbench -h 127.0.0.1 -p 15432 -U postgres -n -c64 -j2 -T"$SECONDS_PER_RUN" -l -f "$OLDPWD/bench/pg_append.sql" postgres)
  rates+=("$(echo "$result" | awk -F'= ' '/^tps/{split($2,a," "); print a[1]}')")
  p50s+=("$(cat "$logdir"/pgbench_log.* | awk '{print $3/1000}' | sort -n | awk '{a[NR]=$1} END {print a[int(NR*0.5)]}')")
  p99s+=("$(cat "$logdir"/pgbench_log.* | awk '{print $3/1000}' | sort -n | awk '{a[NR]=$1} END {print a[int(NR*0.99)]}')")
  rm -rf "$logdir"
done
say "postgresql 15: 64 clients (pgbench), one-row INSERT transactions, fsync + synchronous_commit on: $(printf '%s\n' "${rates[@]}" | median) rows/s, p50 $(printf '%s\n' "${p50s[@]}" | median)ms, p99 $(printf '%s\n' "${p99s[@]}" | median)ms (median of $RUNS runs of ${SECONDS_PER_RUN}s; runs: ${rates[*]})"

# --- PostgreSQL COPY of 10 000 rows, the peer of one NDJSON batch -----------------------
copies=()
for run in $(seq 9); do
  csv="$scratch/copy-$run.csv"
  python3 - "$csv" <<'PY'
import sys, uuid
with open(sys.argv[1], "w") as f:
    for n in range(10_000):
        data = '{"agency":"000.00.31.H56","service":"1.011442.000.00.00.H56","channel":"online","received_at":"2019-03-04T08:00:00+07:00","due_at":"2019-03-11T17:00:00+07:00"}'
        f.write(f'dossier-{uuid.uuid4()},0,{uuid.uuid4()},DossierReceived,"{data.replace(chr(34), chr(34) * 2)}"\n')
PY
  start=$(date +%s%N)
  $psql -c "\\copy events (stream, revision, id, type, data) FROM '$csv' WITH (FORMAT csv)"
  end=$(date +%s%N)
  copies+=("$(awk -v ns=$((end - start)) 'BEGIN{printf "%.0f", 10000 / (ns / 1e9)}')")
  rm -f "$csv"
done
say "postgresql 15: COPY of 10000 rows in one transaction (psql \\copy, same constraints): $(printf '%s\n' "${copies[@]}" | median) rows/s (median of 9; runs: ${copies[*]})"
