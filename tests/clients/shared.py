"""What every client script of tests/clients asks, and how it writes answers: the same
statements and values for each protocol, timestamps as ISO 8601 with their offset (the Rust
tests compare them with /v1/sql's as instants)."""

import datetime


def param_sql(placeholder):
    """The parameterised query, its two parameters written as `placeholder` (`%s`, `?`)."""
    return (
        "SELECT id, received_at, service_level FROM dossiers "
        f"WHERE service_level = {placeholder} AND received_at >= {placeholder} "
        "ORDER BY received_at, id"
    )


PARAM_VALUES = (3, datetime.datetime(2019, 4, 15, tzinfo=datetime.timezone(datetime.timedelta(hours=7))))
SERIES_SQL = (
    "SELECT date_trunc('month', received_at) AS month, count(*) AS n "
    "FROM dossiers GROUP BY 1 ORDER BY 1"
)
# A query that runs for minutes in little memory: a hundred billion numbers, none kept.
SLOW_SQL = "SELECT count(*) FROM generate_series(1, 100000000000) WHERE value % 7 = 8"


def plain(value):
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    return value
