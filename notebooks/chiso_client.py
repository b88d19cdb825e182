"""A small client for chiso: SQL in, a polars DataFrame out, over Arrow Flight SQL.

It reads through ADBC's Flight SQL driver (`adbc_driver_flightsql`), a standard library that
speaks to any Flight SQL server: answers arrive as Arrow record batches and become a polars
DataFrame without a copy through JSON or rows. The server is CHISO_FLIGHT (default
grpc://127.0.0.1:7880, `chiso serve --flight-listen`); CHISO_TOKEN, if set, is sent as a
bearer token (it needs the `query` scope).

    from chiso_client import sql, report, rankings
    sql("SELECT kind, count(*) AS n FROM agencies GROUP BY kind")
    sql("SELECT * FROM dossiers WHERE agency = $1 LIMIT 10", ["26.243"])
    report("2019-01-01", "2019-12-31")

The same connection works from any ADBC client; see the README's "Arrow Flight SQL".
"""

from __future__ import annotations

import datetime
import os
from typing import Any, Sequence

import adbc_driver_flightsql.dbapi as flight_sql
import adbc_driver_manager
import polars as pl
from adbc_driver_flightsql import DatabaseOptions

FLIGHT = os.environ.get("CHISO_FLIGHT", "grpc://127.0.0.1:7880")
TOKEN = os.environ.get("CHISO_TOKEN")

_connection = None


class ChisoError(Exception):
    """chiso refused the statement: the gRPC code (`InvalidArgument`, `PermissionDenied`,
    `DeadlineExceeded`, …) and the server's message."""


def connect() -> flight_sql.Connection:
    """The connection the helpers share (opened on first use)."""
    global _connection
    if _connection is None:
        options = {}
        if TOKEN:
            options[DatabaseOptions.AUTHORIZATION_HEADER.value] = f"Bearer {TOKEN}"
        _connection = flight_sql.connect(FLIGHT, db_kwargs=options, autocommit=True)
    return _connection


def sql(query: str, params: Sequence[Any] | None = None, *, timeout_s: float | None = None) -> pl.DataFrame:
    """Runs one read-only statement; `params` binds `$1, $2, …` (or `?`, in order)."""
    with connect().cursor() as cursor:
        if timeout_s is not None:
            cursor.adbc_statement.set_options(
                **{"adbc.flight.sql.rpc.timeout_seconds.fetch": str(timeout_s)}
            )
        try:
            cursor.execute(query, tuple(params) if params is not None else None)
            table = cursor.fetch_arrow_table()
        except adbc_driver_manager.Error as error:
            raise ChisoError(str(error)) from None
    return pl.from_arrow(table)


def report(start: str, end: str) -> pl.DataFrame:
    """The Biểu 06 period report per agency, local dates `start`..`end` (both included)."""
    start, end = (datetime.date.fromisoformat(day).isoformat() for day in (start, end))
    return sql(f"SELECT * FROM dossier_report(DATE '{start}', DATE '{end}') ORDER BY agency")


def rankings(
    month: str | None = None, scope: str | None = None, metric: str | None = None
) -> pl.DataFrame:
    """Published monthly rankings, filtered by month (YYYY-MM), scope and metric."""
    conditions, params = [], []
    for column, value in (("month", month), ("scope", scope), ("metric", metric)):
        if value is not None:
            params.append(value)
            conditions.append(f"{column} = ${len(params)}")
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    return sql(
        "SELECT month, scope, metric, agency, value, rank, position FROM rankings"
        f"{where} ORDER BY month, scope, metric, rank, agency",
        params,
    )
