"""Fetches one large answer as a client program would, RUNS times; prints the median seconds
to the last row decoded, and the rows. Used by bench/clients.sh.

    python3 bench/fetch.py pg DSN SQL text|binary RUNS     # psycopg 3: fetchall() into tuples
    python3 bench/fetch.py adbc URI SQL RUNS                # ADBC Flight SQL into a pyarrow Table
    python3 bench/fetch.py flight URI SQL RUNS              # pyarrow.flight DoGet into a Table
    python3 bench/fetch.py http-arrow URL SQL RUNS          # /v1/sql?format=arrow into polars
"""

import io
import statistics
import sys
import time
import urllib.parse
import urllib.request


def pg(dsn, sql, mode):
    import psycopg

    with psycopg.connect(dsn) as conn:
        started = time.perf_counter()
        cursor = conn.cursor(binary=(mode == "binary"))
        cursor.execute(sql)
        rows = cursor.fetchall()
        return time.perf_counter() - started, len(rows)


def adbc(uri, sql):
    import adbc_driver_flightsql.dbapi as flight_sql

    with flight_sql.connect(uri, autocommit=True) as conn:
        started = time.perf_counter()
        with conn.cursor() as cursor:
            cursor.execute(sql)
            table = cursor.fetch_arrow_table()
        return time.perf_counter() - started, table.num_rows


def flight(uri, sql):
    import pyarrow.flight as fl

    sys.path.insert(0, "tests/clients")
    from flight_clients import statement_query

    client = fl.FlightClient(uri)
    started = time.perf_counter()
    info = client.get_flight_info(fl.FlightDescriptor.for_command(statement_query(sql)))
    table = client.do_get(info.endpoints[0].ticket).read_all()
    took = time.perf_counter() - started
    client.close()
    return took, table.num_rows


def http_arrow(url, sql):
    import polars as pl

    started = time.perf_counter()
    query = urllib.parse.urlencode({"q": sql, "format": "arrow"})
    with urllib.request.urlopen(f"{url}/v1/sql?{query}") as answer:
        frame = pl.read_ipc_stream(io.BytesIO(answer.read()))
    return time.perf_counter() - started, frame.height


if __name__ == "__main__":
    kind, *args = sys.argv[1:]
    runs = int(args[-1])
    fetch = {
        "pg": lambda: pg(*args[:3]),
        "adbc": lambda: adbc(*args[:2]),
        "flight": lambda: flight(*args[:2]),
        "http-arrow": lambda: http_arrow(*args[:2]),
    }[kind]
    results = [fetch() for _ in range(runs)]
    print(f"{statistics.median(t for t, _ in results):.3f} {results[0][1]}")
