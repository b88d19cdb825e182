#!/usr/bin/env bash
# Prints "agency service" of one dossier of province 26 that the chiso at URL holds: where the
# benchmarks' own appends (bench/append.lua, the append → visible probe) go. Usage:
#   read -r CHISO_AGENCY CHISO_SERVICE < <(bash bench/agency_service.sh URL)
set -euo pipefail
curl -sf "$1/v1/sql" -H 'content-type: application/json' \
  -d '{"sql":"SELECT agency, service FROM dossiers WHERE province = '"'"'26'"'"' LIMIT 1","format":"csv"}' \
  | tail -1 | tr ',' ' '
