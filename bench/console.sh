#!/usr/bin/env bash
# Issue #15: the web console's budgets, in headless chromium (Debian's chromium and chromedriver,
# selenium) against a release `chiso serve --demo --demo-provinces 3 --demo-scale 0.05` that the
# script starts itself, with everything it normally runs (the fold, sealing, the rankings
# scheduler). Measured in the browser, after all of tests/browser/console.py's checks pass:
#   - the first view (the latest national league table) with an empty cache: bytes over the wire
#     (navigation + every resource's transferSize, compressed as sent) and the time from
#     navigation to the table drawn with its data (performance mark `chiso:rendered`), 7 loads;
#   - re-sorting the 136 communes' league table: a header click to the next frame, 20 clicks.
# SHOTS=dir also saves every view's screenshot at 1920×1080 and 390×844 (the README's come from
# here). CHISO=path runs that binary unbuilt. Results: stdout and bench/last-console.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/chiso-target}"
if [ -z "${CHISO:-}" ]; then
  cargo build --release --bin chiso -q
fi
chiso="${CHISO:-$CARGO_TARGET_DIR/release/chiso}"
{
  echo "# $(date -u +%FT%TZ) $(nproc) cores; $(chromium --version 2>/dev/null)"
  python3 tests/browser/console.py --chiso "$chiso" --bench ${SHOTS:+--screenshots "$SHOTS"} | grep -v '^ok '
} | tee bench/last-console.txt
