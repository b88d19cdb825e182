#!/usr/bin/env bash
# Issue #11, item 8: a soak of the release `chiso serve` on the demo decade (Vĩnh Phúc
# 2010–2019, ≈ 3 million events, loaded over HTTP by `chiso serve --demo`), then MINUTES
# (default 30) of steady mixed load from a separate process (bench/soak.py: 8 clients of
# single appends at 20/s each, a 200-event NDJSON batch every 2 s, queries back to back, an SSE
# subscriber), with the fold, the indexer and the scheduler running. One line a minute (with the
# log's and the tables' memory gauges, to attribute the resident set):
# resident set, append p99, query p99. Budgets: resident set grows ≤ 5 % from minute 10 to
# the last minute; each p99 of the last minutes within 1.5× the median of the first five.
# CHISO=path runs that binary unbuilt. Results: stdout and bench/last-soak.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/chiso-target}"
MINUTES=${MINUTES:-30}
scratch="$CARGO_TARGET_DIR/bench-scratch/soak"
out=bench/last-soak.txt
: > "$out"
say() { echo "$*" | tee -a "$out"; }
if [ -z "${CHISO:-}" ]; then
  cargo build --release --bin chiso -q
fi
chiso="${CHISO:-$CARGO_TARGET_DIR/release/chiso}"
rm -rf "$scratch"
mkdir -p "$scratch"
url=http://127.0.0.1:17883
say "# $(date -u +%FT%TZ) $(nproc) cores, $(free -g | awk '/Mem/{print $2}') GiB; soak of $MINUTES minutes"
CHISO_LOG=warn "$chiso" serve --demo --data-dir "$scratch/data" --listen 127.0.0.1:17883 &
pid=$!
trap 'kill $pid 2>/dev/null && wait $pid 2>/dev/null; rm -rf "$scratch"' EXIT
started=$(date +%s)
until curl -sf "$url/ready" > /dev/null; do sleep 1; done
say "demo loaded and folded in $(($(date +%s) - started)) s: $(curl -s "$url/ready")"
python3 bench/soak.py "$url" "$pid" "$MINUTES" "$scratch/soak.json" | tee -a "$out"
python3 - "$scratch/soak.json" "$MINUTES" <<'EOF' | tee -a "$out"
import json, statistics, sys
minutes = json.load(open(sys.argv[1]))["minutes"]
last = int(float(sys.argv[2]))
by = {m["minute"]: m for m in minutes}
rss10, rss_end = by[min(10, last)]["rss_mib"], by[last]["rss_mib"]
growth = (rss_end - rss10) / rss10 * 100
first = [by[m] for m in range(1, 6) if m in by]
tail = [by[m] for m in range(max(1, last - 4), last + 1) if m in by]
ok = growth <= 5
print(f"resident set: minute {min(10, last)} {rss10} MiB, minute {last} {rss_end} MiB: {growth:+.1f} % (budget ≤ 5 %)")
# Where it went: the log's and the tables' own memory, sampled beside it (None: not reported).
parts = [k for k in ("log_cache_mib", "log_memtables_mib", "log_table_readers_mib", "tables_mib")
         if by[last].get(k) is not None]
if parts:
    start, end = by[min(10, last)], by[last]
    rest = lambda m: round(m["rss_mib"] - sum(m[k] for k in parts), 1)
    print("  of it: " + ", ".join(f"{k[:-4]} {start[k]} → {end[k]}" for k in parts)
          + f", the rest {rest(start)} → {rest(end)} MiB")
for key in ("append_p99_ms", "query_p99_ms"):
    base = statistics.median(m[key] for m in first)
    worst = max(m[key] for m in tail)
    ratio = worst / base if base else 0
    ok &= ratio <= 1.5
    print(f"{key}: median of minutes 1–5 {base} ms, worst of the last five {worst} ms: {ratio:.2f}× (budget ≤ 1.5×)")
print("within budget" if ok else "OVER BUDGET")
EOF
