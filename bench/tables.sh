#!/usr/bin/env bash
# Table benchmarks with their PostgreSQL peer in one run (issue #4, ARCHITECTURE.md §8):
#   1. cargo bench --bench tables: rebuild by replay, restart from segments, the period report
#      and a monthly query, append → visible in SQL; it writes its events as CSV
#   2. PostgreSQL 15: the same events loaded with COPY, then the same fold as SQL (dossiers and
#      daily counts), and the same period report
# Results go to stdout and bench/last-tables-run.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/chiso-target}"
scratch="$CARGO_TARGET_DIR/bench-scratch"
mkdir -p "$scratch"
out=bench/last-tables-run.txt
: > "$out"
say() { echo "$*" | tee -a "$out"; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

say "# $(date -u +%FT%TZ) $(nproc) cores, $(free -g | awk '/Mem/{print $2}') GiB, $(uname -r)"
CHISO_BENCH_DIR="$scratch" cargo bench --bench tables -q 2>/dev/null | tee -a "$out"

source bench/pg.sh
events=$(wc -l < "$scratch/tables-events.csv")
$psql -c "CREATE TABLE events (position bigint PRIMARY KEY, stream text NOT NULL, type text NOT NULL, data jsonb NOT NULL)"
$psql -c "\\copy events FROM '$scratch/tables-events.csv' WITH (FORMAT csv)"
$psql -c "VACUUM ANALYZE events"
rates=()
for run in 1 2 3; do
  ms=$($psql -f bench/pg_tables.sql | awk '/^Time:/{sum += $2} END {print sum}')
  rates+=("$(awk -v ms="$ms" -v n="$events" 'BEGIN{printf "%.0f", n / (ms / 1000)}')")
done
say "postgresql 15: the same $events events folded by SQL into dossiers and daily counts (events already in a table): $(printf '%s\n' "${rates[@]}" | median) events/s (median of 3; runs: ${rates[*]})"
$psql -c "VACUUM ANALYZE pg_dossiers"
times=$( (echo '\timing on'; for run in $(seq 21); do cat bench/pg_report.sql; done) | $psql -o /dev/null | awk '/^Time:/{print $2}')
say "postgresql 15: the period report for the province-year on pg_dossiers: p50 $(echo "$times" | median) ms (21 runs)"
