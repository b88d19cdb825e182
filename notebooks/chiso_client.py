"""A small client for chiso's HTTP API: SQL in, a polars DataFrame out.

Answers travel as Arrow IPC streams (no JSON round trip for data). The server is CHISO_URL
(default http://127.0.0.1:7878); CHISO_TOKEN, if set, is sent as a bearer token (it needs the
`query` scope).

    from chiso_client import sql, report, rankings
    sql("SELECT kind, count(*) AS n FROM agencies GROUP BY kind")
    sql("SELECT * FROM dossiers WHERE agency = $1 LIMIT 10", ["26.243"])
    report("2019-01-01", "2019-12-31")
"""

from __future__ import annotations

import io
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import polars as pl

URL = os.environ.get("CHISO_URL", "http://127.0.0.1:7878").rstrip("/")
TOKEN = os.environ.get("CHISO_TOKEN")


class ChisoError(Exception):
    """chiso refused the request: `status`, `code` and the server's message."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


def _headers(json_body: bool) -> dict[str, str]:
    headers = {"Accept": "application/vnd.apache.arrow.stream"}
    if json_body:
        headers["Content-Type"] = "application/json"
    if TOKEN:
        headers["Authorization"] = f"Bearer {TOKEN}"
    return headers


def _fetch(request: urllib.request.Request, timeout: float) -> pl.DataFrame:
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            data = response.read()
    except urllib.error.HTTPError as error:
        try:
            detail = json.load(error)["error"]
        except (ValueError, KeyError):
            detail = {"code": "http_error", "message": error.reason}
        raise ChisoError(error.code, detail["code"], detail["message"]) from None
    return pl.read_ipc_stream(io.BytesIO(data))


def sql(
    query: str,
    params: list[Any] | dict[str, Any] | None = None,
    *,
    min_position: int | None = None,
    timeout_ms: int | None = None,
) -> pl.DataFrame:
    """Runs one read-only statement; `params` binds `$1, $2, …` (a list) or `$name` (a dict)."""
    body: dict[str, Any] = {"sql": query, "format": "arrow"}
    if params is not None:
        body["params"] = params
    if min_position is not None:
        body["min_position"] = min_position
    if timeout_ms is not None:
        body["timeout_ms"] = timeout_ms
    request = urllib.request.Request(
        f"{URL}/v1/sql", data=json.dumps(body).encode(), headers=_headers(True), method="POST"
    )
    return _fetch(request, timeout=(timeout_ms or 30_000) / 1000 + 10)


def _get(path: str, **query: str | None) -> pl.DataFrame:
    values = {k: v for k, v in query.items() if v is not None}
    values["format"] = "arrow"
    request = urllib.request.Request(
        f"{URL}{path}?{urllib.parse.urlencode(values)}", headers=_headers(False)
    )
    return _fetch(request, timeout=60)


def report(start: str, end: str) -> pl.DataFrame:
    """The Biểu 06 period report per agency, local dates `start`..`end` (both included)."""
    return _get("/v1/reports/dossiers", **{"from": start, "to": end})


def rankings(
    month: str | None = None, scope: str | None = None, metric: str | None = None
) -> pl.DataFrame:
    """Published monthly rankings, filtered by month (YYYY-MM), scope and metric."""
    return _get("/v1/rankings", month=month, scope=scope, metric=metric)
