"""Real PostgreSQL clients against chiso's PostgreSQL protocol, for tests/e2e/clients.rs.

    python3 tests/clients/pg_clients.py COMMAND PORT TOKEN [ARGS...]

Each command prints one JSON document on standard output; timestamps are ISO 8601 with
their offset, so the test compares them with /v1/sql's as instants.
"""

import json
import sys
import threading
import time
import urllib.request

import psycopg

from shared import PARAM_VALUES, SERIES_SQL, SLOW_SQL, param_sql, plain

PARAM_SQL = param_sql("%s")


def connect(port, token, **kwargs):
    return psycopg.connect(
        host="127.0.0.1", port=port, user="chiso", dbname="chiso", password=token,
        connect_timeout=10, **kwargs,
    )


def rows(cursor):
    return [[plain(v) for v in row] for row in cursor.fetchall()]


def psycopg_queries(port, token):
    with connect(port, token) as conn:
        # Server-side binding (the extended protocol) and client-side (simple protocol).
        param = rows(conn.execute(PARAM_SQL, PARAM_VALUES, prepare=True))
        series = rows(conn.execute(SERIES_SQL))
        simple = rows(psycopg.ClientCursor(conn).execute(PARAM_SQL, PARAM_VALUES))
    return {"param": param, "series": series, "simple": simple}


def sqlalchemy_pandas(port, token):
    import pandas as pd
    import sqlalchemy as sa

    engine = sa.create_engine(f"postgresql+psycopg://chiso:{token}@127.0.0.1:{port}/chiso")
    tables = sorted(sa.inspect(engine).get_table_names())
    frame = pd.read_sql(
        sa.text(PARAM_SQL.replace("%s", ":level", 1).replace("%s", ":since", 1)),
        engine,
        params={"level": PARAM_VALUES[0], "since": PARAM_VALUES[1]},
    )
    series = pd.read_sql(sa.text(SERIES_SQL), engine)
    engine.dispose()
    return {
        "tables": tables,
        "param": [[r.id, r.received_at.isoformat(), int(r.service_level)] for r in frame.itertuples()],
        "series": [[r.month.isoformat(), int(r.n)] for r in series.itertuples()],
    }


def sqlstate_of(conn, sql):
    try:
        conn.execute(sql)
        return "ok"
    except psycopg.Error as error:
        return error.sqlstate or "none"


def refusals(port, token):
    statements = [
        "CREATE TABLE t (a INT)",
        "CREATE VIEW v AS SELECT 1",
        "DROP TABLE dossiers",
        "INSERT INTO agencies SELECT * FROM agencies",
        "DELETE FROM dossiers",
        "UPDATE dossiers SET status = 'x'",
        "COPY dossiers FROM STDIN",
        "COPY dossiers TO '/tmp/chiso-copy-out'",
        "COPY (SELECT 1) TO '/tmp/chiso-copy-out'",
        "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '/etc/passwd'",
        "SET datafusion.runtime.memory_limit = '1K'",
        "SET datafusion.execution.batch_size = 1",
        "SET no_such_setting = 1",
        "SELECT * FROM system.queries",
        "SELECT * FROM no_such_table",
    ]
    parameters = ["SELECT 1 WHERE 1 = $2000000000", "SELECT 1 WHERE 1 = $0"]
    with connect(port, token, autocommit=True) as conn:
        answers = {sql: sqlstate_of(conn, sql) for sql in statements}
        for sql in parameters:
            # Sent as a prepared statement with no values, as a driver describes it first.
            try:
                conn.execute(sql, prepare=True)
                answers[sql] = "ok"
            except psycopg.Error as error:
                answers[sql] = error.sqlstate or "none"
        answers["alive"] = conn.execute("SELECT 1").fetchone()[0]
    return answers


def revocation(port, token, url, admin, token_id):
    conn = connect(port, token, autocommit=True)
    before = conn.execute("SELECT count(*) FROM agencies").fetchone()[0]
    request = urllib.request.Request(
        f"{url}/v1/tokens/{token_id}", method="DELETE",
        headers={"Authorization": f"Bearer {admin}"},
    )
    status = urllib.request.urlopen(request).status
    time.sleep(0.2)
    try:
        conn.execute("SELECT count(*) FROM agencies")
        after = "ok"
    except psycopg.Error as error:
        after = error.sqlstate or "closed"
    try:
        connect(port, token)
        reconnect = "ok"
    except psycopg.Error as error:
        reconnect = str(error)
    return {"before": before, "revoke_status": status, "after": after, "reconnect": reconnect}


def timeout_and_cancel(port, token):
    with connect(port, token, autocommit=True) as conn:
        conn.execute("SET statement_timeout = '300ms'")
        timed_out = sqlstate_of(conn, SLOW_SQL)
        after_timeout = conn.execute("SELECT 1").fetchone()[0]
        conn.execute("RESET statement_timeout")
        timer = threading.Timer(1.0, conn.cancel)
        timer.start()
        started = time.monotonic()
        cancelled = sqlstate_of(conn, SLOW_SQL)
        seconds = time.monotonic() - started
        after_cancel = conn.execute("SELECT 1").fetchone()[0]
        settings = conn.execute("SHOW statement_timeout").fetchone()[0]
    return {
        "timed_out": timed_out, "after_timeout": after_timeout,
        "cancelled": cancelled, "cancel_seconds": seconds, "after_cancel": after_cancel,
        "statement_timeout": settings,
    }


def replay(port, token, path):
    with open(path) as f:
        statements = json.load(f)["statements"]
    answers = []
    with connect(port, token, autocommit=True) as conn:
        # DBeaver binds the oids it read from earlier answers.
        oids = {
            "public_oid": conn.execute(
                "SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = 'public'"
            ).fetchone()[0],
            "dossiers_oid": conn.execute(
                "SELECT c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
                "ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relname = 'dossiers'"
            ).fetchone()[0],
        }
        for statement in statements:
            sql = statement["sql"]
            for name, oid in oids.items():
                sql = sql.replace("{" + name + "}", str(oid))
            try:
                cursor = conn.execute(sql)
                count = len(cursor.fetchall()) if cursor.description else 0
                answers.append({"tool": statement["tool"], "ok": True, "rows": count,
                                "min_rows": statement.get("min_rows", 0)})
            except psycopg.Error as error:
                answers.append({"tool": statement["tool"], "ok": False, "sqlstate": error.sqlstate, "error": str(error)})
    return answers


def drain(port, token):
    """A statement of some seconds, during which the test stops the server."""
    conn = connect(port, token, autocommit=True)
    count = conn.execute(
        "SELECT count(*) FROM generate_series(1, 40000000) WHERE value % 7 = 8"
    ).fetchone()[0]
    try:
        conn.execute("SELECT 1")
        after = "ok"
    except psycopg.Error as error:
        after = error.sqlstate or "closed"
    return {"count": count, "next": after}


def protocol(port, token):
    """The protocol's edges: rows streamed as they come, COPY in binary, settings as
    PostgreSQL reads them, statements too long or unsupported."""
    answers = {}
    with connect(port, token, autocommit=True) as conn:
        # An Execute for every row (libpq's single-row mode): rows arrive before the query
        # ends, here at its timeout or its row limit.
        conn.execute("SET statement_timeout = '3s'")
        received = 0
        try:
            for _ in conn.cursor().stream("SELECT value FROM generate_series(1, 100000000000)"):
                received += 1
            answers["stream_end"] = "ok"
        except psycopg.Error as error:
            answers["stream_end"] = error.sqlstate
        answers["streamed_rows"] = received
        conn.execute("RESET statement_timeout")
        # Binary COPY: rows psycopg reads back, and the signature and trailer with no rows.
        with conn.cursor() as cur:
            with cur.copy(
                "COPY (SELECT id, CAST(service_level AS BIGINT) FROM dossiers ORDER BY id LIMIT 3) "
                "TO STDOUT (FORMAT BINARY)"
            ) as copy:
                copy.set_types(["text", "int8"])
                answers["binary_rows"] = [list(row) for row in copy.rows()]
            answers["binary_rowcount"] = cur.rowcount
            with cur.copy("COPY (SELECT 1 AS a WHERE false) TO STDOUT (FORMAT BINARY)") as copy:
                answers["binary_empty"] = b"".join(bytes(block) for block in copy).hex()
            with cur.copy("COPY (SELECT id FROM dossiers ORDER BY id LIMIT 2) TO STDOUT (FORMAT CSV, HEADER)") as copy:
                answers["csv"] = b"".join(bytes(block) for block in copy).decode()
            answers["csv_rowcount"] = cur.rowcount
        # Settings: quoted names, DEFAULT the keyword and 'default' the string, fractions
        # of a millisecond, zone names in any case; writing transactions refused.
        conn.execute('SET "DateStyle" = \'ISO, DMY\'')
        answers["datestyle"] = conn.execute("SHOW datestyle").fetchone()[0]
        conn.execute('RESET "DateStyle"')
        answers["datestyle_reset"] = conn.execute("SHOW DateStyle").fetchone()[0]
        conn.execute("SET application_name = 'default'")
        answers["application_name"] = conn.execute("SHOW application_name").fetchone()[0]
        conn.execute("SET application_name = DEFAULT")
        answers["application_name_reset"] = conn.execute("SHOW application_name").fetchone()[0]
        conn.execute("SET statement_timeout = '0.5'")
        answers["half_ms"] = conn.execute("SHOW statement_timeout").fetchone()[0]
        conn.execute("RESET statement_timeout")
        answers["utc"] = sqlstate_of(conn, "SET TIME ZONE 'utc'")
        for sql in [
            "SET default_transaction_read_only = off",
            "SET transaction_read_only = false",
            "BEGIN READ WRITE",
            "ROLLBACK",
            "SET ALL = 1",
            "LISTEN dossiers",
            "COPY (SELECT 1) TO STDOUT (FORMAT CSV, DELIMITER 'é')",
            "COPY (SELECT 1) TO STDOUT (FORMAT CSV, ESCAPE '\\')",
            "COPY (SELECT 1) TO STDOUT (FORMAT CSV, DELIMITER '\"')",
            "DISCARD PLANS",
            "SELECT 1 /* " + "x" * (1 << 20) + " */",
        ]:
            answers[sql[:60]] = sqlstate_of(conn, sql)
        answers["alive"] = conn.execute("SELECT 1").fetchone()[0]
    return answers


COMMANDS = {
    "protocol": protocol,
    "drain": drain,
    "psycopg": psycopg_queries,
    "sqlalchemy": sqlalchemy_pandas,
    "refusals": refusals,
    "revocation": revocation,
    "timeout-and-cancel": timeout_and_cancel,
    "replay": replay,
}

if __name__ == "__main__":
    command, port, token, *rest = sys.argv[1:]
    print(json.dumps(COMMANDS[command](int(port), token, *rest)))
