# Sourced by the benchmark scripts: a throwaway PostgreSQL 15 on 127.0.0.1:15432, fsync on,
# stopped and removed when the script exits. Sets $psql.
PGBIN=/usr/lib/postgresql/15/bin
dpkg -s postgresql-15 >/dev/null 2>&1 || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15; }
# PostgreSQL runs as its own user, which cannot enter /root: give it a directory of its own.
pgdata=$(mktemp -d /var/tmp/chiso-bench-pg-XXXX)
chown postgres "$pgdata"
runuser -u postgres -- "$PGBIN/initdb" -D "$pgdata" -A trust -U postgres >/dev/null
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$pgdata" -l "$pgdata/log" -w start \
  -o "-c listen_addresses=127.0.0.1 -p 15432 -k /tmp -c max_connections=200 -c shared_buffers=512MB -c work_mem=256MB -c fsync=on -c synchronous_commit=on" >/dev/null
trap 'runuser -u postgres -- "$PGBIN/pg_ctl" -D "$pgdata" -m fast stop >/dev/null 2>&1 || true; rm -rf "$pgdata"' EXIT
psql="psql -h 127.0.0.1 -p 15432 -U postgres -q -v ON_ERROR_STOP=1"

# Loads a CSV answer of `SELECT * FROM dossiers` (with its header) into a table of the same
# name, columns typed by their names.
load_dossiers() {
  local csv=$1 columns
  columns=$(head -1 "$csv" | tr ',' '\n' | awk '
    /_at$/ {print $0 " timestamptz"; next}
    /^(service_level|rating)$/ {print $0 " int"; next}
    /^paused_seconds$/ {print $0 " bigint"; next}
    /^paid_online$/ {print $0 " boolean"; next}
    {print $0 " text"}' | paste -sd, -)
  $psql -c "CREATE TABLE dossiers ($columns)"
  $psql -c "\\copy dossiers FROM '$csv' WITH (FORMAT csv, HEADER)"
  $psql -c "VACUUM ANALYZE dossiers"
}
