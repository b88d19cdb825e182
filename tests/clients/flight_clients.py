"""Real Arrow Flight SQL clients against chiso's Flight SQL service, for tests/e2e/flight.rs.

    python3 tests/clients/flight_clients.py COMMAND PORT TOKEN [ARGS...]

Each command prints one JSON document on standard output; timestamps are ISO 8601 with
their offset, so the test compares them with /v1/sql's as instants.
"""

import json
import sys
import time
import urllib.request

import adbc_driver_flightsql.dbapi as flight_sql
import adbc_driver_manager
import pyarrow.flight as fl
from adbc_driver_flightsql import DatabaseOptions

from shared import PARAM_VALUES, SERIES_SQL, SLOW_SQL, param_sql, plain

PARAM_SQL = param_sql("?")


def table_rows(table):
    return [[plain(v) for v in row.values()] for row in table.to_pylist()]


def connect(port, token, **db_kwargs):
    if token is not None:
        db_kwargs.setdefault(DatabaseOptions.AUTHORIZATION_HEADER.value, f"Bearer {token}")
    return flight_sql.connect(f"grpc://127.0.0.1:{port}", db_kwargs=db_kwargs, autocommit=True)


def error_text(error):
    return f"{type(error).__name__}: {error}"


def adbc(port, token):
    """ADBC with a bearer header: a parameterised query (`?` and `$1`), a time series,
    the catalog through adbc_get_objects, the server's info, and polars on top."""
    import polars as pl

    with connect(port, token) as conn:
        with conn.cursor() as cur:
            cur.execute(PARAM_SQL, PARAM_VALUES)
            param = table_rows(cur.fetch_arrow_table())
            cur.execute(PARAM_SQL.replace("?", "$1", 1).replace("?", "$2", 1), PARAM_VALUES)
            dollar = table_rows(cur.fetch_arrow_table())
            cur.execute(SERIES_SQL)
            series_table = cur.fetch_arrow_table()
            series = table_rows(series_table)
            series_types = [str(t) for t in series_table.schema.types]
            cur.execute("SELECT id FROM dossiers WHERE id = 'none'")
            empty = cur.fetch_arrow_table()
        objects = conn.adbc_get_objects(depth="all", catalog_filter="chiso").read_all().to_pylist()
        tables = {}
        for catalog in objects:
            for schema in catalog["catalog_db_schemas"]:
                for table in schema["db_schema_tables"]:
                    name = f'{schema["db_schema_name"]}.{table["table_name"]}'
                    tables[name] = [c["column_name"] for c in table["table_columns"]]
        dossiers_schema = conn.adbc_get_table_schema("dossiers", db_schema_filter="public")
        info = conn.adbc_get_info()
        frame = pl.read_database(SERIES_SQL, conn)
    return {
        "param": param,
        "dollar": dollar,
        "series": series,
        "series_types": series_types,
        "empty_columns": empty.column_names,
        "empty_rows": empty.num_rows,
        "tables": sorted(tables),
        "dossiers_columns": tables.get("public.dossiers"),
        "dossiers_schema": dossiers_schema.names,
        "vendor": info.get("vendor_name"),
        "polars": [[plain(v) for v in row] for row in frame.rows()],
    }


def adbc_basic(port, token):
    """ADBC with a user name and the token as password: a handshake, then Bearer."""
    with connect(port, None, username="chiso", password=token) as conn:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) AS n FROM agencies")
            return {"agencies": cur.fetchone()[0]}


def adbc_tls(port, token, cert):
    """ADBC over TLS, trusting the server's certificate; a plaintext client gets nothing."""
    with open(cert) as f:
        roots = f.read()
    options = {"adbc.flight.sql.client_option.tls_root_certs": roots,
               DatabaseOptions.AUTHORIZATION_HEADER.value: f"Bearer {token}"}
    conn = flight_sql.connect(f"grpc+tls://localhost:{port}", db_kwargs=options, autocommit=True)
    with conn:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) AS n FROM agencies")
            agencies = cur.fetchone()[0]
    try:
        with connect(port, token, **{"adbc.flight.sql.rpc.timeout_seconds.query": "5"}) as conn:
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
                cur.fetchall()
        plaintext = "ok"
    except adbc_driver_manager.Error as error:
        plaintext = error_text(error)
    return {"agencies": agencies, "plaintext": plaintext}


def _varint(n):
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | 0x80 if n else byte)
        if not n:
            return bytes(out)


def _field(number, payload):
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def statement_query(sql):
    """A Flight SQL CommandStatementQuery in its protobuf Any, written by hand: pyarrow has a
    Flight client, not a Flight SQL one."""
    inner = _field(1, sql.encode())
    return _field(1, b"type.googleapis.com/arrow.flight.protocol.sql.CommandStatementQuery") + _field(2, inner)


SQL_TYPE = b"type.googleapis.com/arrow.flight.protocol.sql."


def _any(name, inner):
    return _field(1, SQL_TYPE + name) + _field(2, inner)


def _fields(message):
    """The length-delimited fields of a protobuf message: {number: bytes} (the last wins)."""
    fields, at = {}, 0

    def varint():
        nonlocal at
        value, shift = 0, 0
        while True:
            byte = message[at]
            at += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value

    while at < len(message):
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == 2:
            size = varint()
            fields[number] = message[at:at + size]
            at += size
        elif wire == 0:
            varint()
        else:
            raise ValueError(f"wire type {wire}")
    return fields


def prepared(client, options, sql, row):
    """Flight SQL's prepared statement by hand: CreatePreparedStatement, DoPut of one row of
    parameters (the answer is the bound handle), GetFlightInfo, DoGet."""
    action = fl.Action("CreatePreparedStatement",
                       _any(b"ActionCreatePreparedStatementRequest", _field(1, sql.encode())))
    result = next(iter(client.do_action(action, options)))
    handle = _fields(_fields(result.body.to_pybytes())[2])[1]
    command = lambda handle: _any(b"CommandPreparedStatementQuery", _field(1, handle))
    descriptor = fl.FlightDescriptor.for_command(command(handle))
    writer, reader = client.do_put(descriptor, row.schema, options)
    writer.write_table(row)
    writer.done_writing()
    bound = _fields(reader.read().to_pybytes())[1]
    writer.close()
    info = client.get_flight_info(fl.FlightDescriptor.for_command(command(bound)), options)
    return client.do_get(info.endpoints[0].ticket, options).read_all()


def pyarrow_flight(port, token):
    """pyarrow.flight: a Basic handshake for the Bearer header, then GetFlightInfo and DoGet;
    a prepared statement with parameters, its messages written by hand."""
    import pyarrow as pa

    client = fl.FlightClient(f"grpc://127.0.0.1:{port}")
    header = client.authenticate_basic_token(b"chiso", token.encode())
    options = fl.FlightCallOptions(headers=[header])
    info = client.get_flight_info(fl.FlightDescriptor.for_command(statement_query(SERIES_SQL)), options)
    reader = client.do_get(info.endpoints[0].ticket, options)
    table = reader.read_all()
    row = pa.table({"0": pa.array([PARAM_VALUES[0]], pa.int64()),
                    "1": pa.array([PARAM_VALUES[1]], pa.timestamp("us", tz="+07:00"))})
    param = prepared(client, options, PARAM_SQL, row)
    return {
        "series": table_rows(table),
        "param": table_rows(param),
        "same_schema": info.schema.equals(table.schema),
        "header": header[0].decode(),
    }


def refusals(port, token):
    statements = [
        "CREATE TABLE t (a INT)",
        "INSERT INTO agencies SELECT * FROM agencies",
        "DELETE FROM dossiers",
        "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '/etc/passwd'",
        "SET datafusion.runtime.memory_limit = '1K'",
        "COPY dossiers TO '/tmp/chiso-flight-copy-out'",
        "COPY dossiers TO '/tmp/chiso-flight-copy-out.csv'",
        "SELECT * FROM system.queries",
        "SELECT * FROM no_such_table",
    ]
    answers = {}
    with connect(port, token) as conn:
        for sql in statements:
            try:
                with conn.cursor() as cur:
                    cur.execute(sql)
                    cur.fetchall()
                answers[sql] = "ok"
            except adbc_driver_manager.Error as error:
                answers[sql] = error_text(error)
        with conn.cursor() as cur:
            cur.execute("SELECT 1 AS one")
            answers["alive"] = cur.fetchone()[0]
    for name, bad in [("wrong", "not-a-token"), ("none", None)]:
        try:
            with connect(port, bad) as conn:
                with conn.cursor() as cur:
                    cur.execute("SELECT 1")
                    cur.fetchall()
            answers[name] = "ok"
        except adbc_driver_manager.Error as error:
            answers[name] = error_text(error)
    return answers


def revocation(port, token, url, admin, token_id):
    conn = connect(port, token)
    cur = conn.cursor()
    cur.execute("SELECT count(*) FROM agencies")
    before = cur.fetchone()[0]
    request = urllib.request.Request(
        f"{url}/v1/tokens/{token_id}", method="DELETE",
        headers={"Authorization": f"Bearer {admin}"},
    )
    status = urllib.request.urlopen(request).status
    try:
        cur.execute("SELECT count(*) FROM agencies")
        cur.fetchall()
        after = "ok"
    except adbc_driver_manager.Error as error:
        after = error_text(error)
    return {"before": before, "revoke_status": status, "after": after}


def timeout_and_cancel(port, token, url, admin):
    """A runaway query stops at the client's deadline; one whose reader goes away is
    cancelled (it leaves the running queries)."""
    answers = {}
    with connect(port, token, **{"adbc.flight.sql.rpc.timeout_seconds.fetch": "1"}) as conn:
        started = time.monotonic()
        try:
            with conn.cursor() as cur:
                cur.execute(SLOW_SQL)
                cur.fetchall()
            answers["timed_out"] = "ok"
        except adbc_driver_manager.Error as error:
            answers["timed_out"] = error_text(error)
        answers["timeout_seconds"] = time.monotonic() - started
    client = fl.FlightClient(f"grpc://127.0.0.1:{port}")
    options = fl.FlightCallOptions(headers=[(b"authorization", f"Bearer {token}".encode())])
    info = client.get_flight_info(fl.FlightDescriptor.for_command(statement_query(SLOW_SQL)), options)
    reader = client.do_get(info.endpoints[0].ticket, options)
    time.sleep(0.5)

    def running():
        request = urllib.request.Request(f"{url}/v1/queries", headers={"Authorization": f"Bearer {admin}"})
        listed = json.load(urllib.request.urlopen(request))
        return [q for q in listed["queries"] if q["protocol"] == "flightsql"]

    answers["running_before"] = len(running())
    reader.cancel()
    client.close()
    deadline = time.monotonic() + 10
    while running() and time.monotonic() < deadline:
        time.sleep(0.1)
    answers["running_after"] = len(running())
    return answers


def rows(port, token, sql):
    """The rows of one query through ADBC, or its error."""
    try:
        with connect(port, token) as conn:
            with conn.cursor() as cur:
                cur.execute(sql)
                return {"rows": table_rows(cur.fetch_arrow_table())}
    except Exception as error:  # the test compares the refusal
        return {"error": error_text(error)}


COMMANDS = {
    "rows": rows,
    "adbc": adbc,
    "adbc-basic": adbc_basic,
    "adbc-tls": adbc_tls,
    "pyarrow": pyarrow_flight,
    "refusals": refusals,
    "revocation": revocation,
    "timeout-and-cancel": timeout_and_cancel,
}

if __name__ == "__main__":
    command, port, token, *rest = sys.argv[1:]
    print(json.dumps(COMMANDS[command](int(port), token, *rest)))
