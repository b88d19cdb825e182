"""Mixed load against a running chiso serve for a fixed time, with one line of figures a
minute: the server's resident set, append p99, query p99 (what each client saw).

Load, steady rather than flat out (a soak looks for growth, not for the ceiling):
  - APPENDERS threads, each a single-event append every 1/APPEND_RATE s: a new dossier, or
    the resolution of its oldest dossier once that is RESOLVE_DAYS old on the log clock;
  - one thread posting an NDJSON batch of BATCH events every 2 s: the resolutions due of its
    earlier dossiers, and new ones;
  - one thread running the queries below in turn, back to back;
  - one Server-Sent Events subscriber following the dossier category.
The receipts' times follow a log clock that runs DAYS_PER_MINUTE days a minute from 2020-01-01
(after the demo decade), so months settle and seal under the load as they do in service, and
memory can level off: with wall-clock times every receipt of the run would land in one month
that stays in memory and grows by the 16 000 dossiers a minute the load adds. Dossiers are
resolved as in service: an open dossier stays in memory after its month is sealed (a later
event changes it), so a load of receipts alone grows the server by every dossier it adds.
Every answer must be a success. Usage: soak.py URL PID MINUTES OUT.json
"""

import calendar
import collections
import os

import http.client
import json
import sys
import threading
import time
import uuid
from urllib.parse import urlencode, urlparse

URL, PID, MINUTES, OUT = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
APPENDERS, APPEND_RATE, BATCH = 8, 20.0, 200
RESOLVE_DAYS = 5
HOST = urlparse(URL).netloc
DAYS_PER_MINUTE = float(os.environ.get("SOAK_DAYS_PER_MINUTE", "15"))
LOG_EPOCH = calendar.timegm((2020, 1, 1, 1, 0, 0))
STARTED = time.time()


def log_clock():
    """The receipts' time: DAYS_PER_MINUTE days of the log a minute of the run."""
    return LOG_EPOCH + (time.time() - STARTED) * DAYS_PER_MINUTE * 1440

QUERIES = [
    "SELECT province, date_trunc('month', received_at) AS month, count(*) AS received, "
    "count(*) FILTER (WHERE timeliness = 'on_time') AS on_time FROM dossiers "
    "GROUP BY 1, 2 ORDER BY 1, 2",
    "SELECT * FROM dossier_report(DATE '2019-01-01', DATE '2019-12-31') WHERE agency = '26'",
    "SELECT channel, count(*) AS n FROM dossiers WHERE received_at >= TIMESTAMP '2020-01-01' GROUP BY 1",
]
stop = time.time() + MINUTES * 60
lock = threading.Lock()
samples = {"append": [], "query": []}  # (time, seconds)
failures = []
sse_events = [0]


def receipt(agency, service):
    dossier = str(uuid.uuid4())
    at = log_clock()
    now = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(at))
    due = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(at + 7 * 86400))
    data = {"agency": agency, "service": service, "channel": "online",
            "received_at": now, "due_at": due}
    return dossier, {"id": dossier, "type": "DossierReceived", "data": data}


def resolution():
    at = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(log_clock()))
    data = {"at": at, "outcome": "approved"}
    return {"id": str(uuid.uuid4()), "type": "DossierResolved", "data": data}


def due(pending):
    """The oldest open dossier of `pending` (received time, id), once RESOLVE_DAYS old."""
    if pending and log_clock() - pending[0][0] >= RESOLVE_DAYS * 86400:
        return pending.popleft()[1]
    return None


def request(connection, method, path, body=None, content_type="application/json"):
    headers = {"content-type": content_type} if body is not None else {}
    connection.request(method, path, body=body, headers=headers)
    response = connection.getresponse()
    payload = response.read()
    if response.status >= 300:
        raise RuntimeError(f"{method} {path}: {response.status} {payload[:300]!r}")
    return payload


def timed(kind, work):
    started = time.time()
    try:
        work()
    except Exception as error:  # noqa: BLE001 - every failure is recorded and fails the run
        with lock:
            failures.append(f"{kind}: {error}")
        return
    with lock:
        samples[kind].append((started, time.time() - started))


def appender(agency, service):
    connection = http.client.HTTPConnection(HOST, timeout=60)
    next_at = time.time()
    pending = collections.deque()
    while time.time() < stop:
        dossier = due(pending)
        if dossier is None:
            dossier, event = receipt(agency, service)
            body = json.dumps({"expected_revision": "no_stream", "events": [event]})
            pending.append((log_clock(), dossier))
        else:
            body = json.dumps({"expected_revision": 0, "events": [resolution()]})
        timed("append", lambda: request(connection, "POST", f"/v1/streams/dossier-{dossier}", body))
        next_at += 1 / APPEND_RATE
        time.sleep(max(0, next_at - time.time()))


def batcher(agency, service):
    connection = http.client.HTTPConnection(HOST, timeout=60)
    pending = collections.deque()
    while time.time() < stop:
        lines = []
        for _ in range(BATCH):
            dossier = due(pending)
            if dossier is None:
                dossier, event = receipt(agency, service)
                pending.append((log_clock(), dossier))
            else:
                event = resolution()
            lines.append(json.dumps({"stream": f"dossier-{dossier}", **event}))
        body = "\n".join(lines)
        timed("append", lambda: request(connection, "POST", "/v1/events", body, "application/x-ndjson"))
        time.sleep(2)


def querier():
    connection = http.client.HTTPConnection(HOST, timeout=300)
    n = 0
    while time.time() < stop:
        sql = QUERIES[n % len(QUERIES)]
        n += 1
        timed("query", lambda: request(connection, "GET", "/v1/sql?" + urlencode({"q": sql})))


def subscriber():
    try:
        connection = http.client.HTTPConnection(HOST, timeout=60)
        # /ready answers the log's head whether or not the tables have caught up (then 503).
        connection.request("GET", "/ready")
        head = json.loads(connection.getresponse().read())["log_head"]
        connection.request("GET", f"/v1/subscribe?from={head}&category=dossier")
        response = connection.getresponse()
        while time.time() < stop:
            line = response.fp.readline()
            if not line:
                raise RuntimeError("the stream ended")
            if line.startswith(b"id:"):
                sse_events[0] += 1
    except Exception as error:  # noqa: BLE001 - recorded, fails the run
        with lock:
            failures.append(f"sse: {error}")


def resident():
    """The server's resident set in MiB: in all, anonymous (heaps, stacks) and file-backed
    (mapped files: the binary, libraries), and its thread count."""
    fields = {}
    with open(f"/proc/{PID}/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            fields[name] = value.split()[0] if value.split() else "0"
    mib = lambda name: round(int(fields.get(name, 0)) / 1024, 1)
    return {"rss_mib": mib("VmRSS"), "anon_mib": mib("RssAnon"), "file_mib": mib("RssFile"),
            "threads": int(fields.get("Threads", 0))}


# Gauges of /metrics sampled with the resident set each minute, to say where memory went.
GAUGES = {
    "chiso_log_block_cache_bytes": "log_cache_mib",
    "chiso_log_memtable_bytes": "log_memtables_mib",
    "chiso_log_table_readers_bytes": "log_table_readers_mib",
    "chiso_tables_memory_bytes": "tables_mib",
    "chiso_tables_footer_cache_bytes": "footers_mib",
}


def gauges(connection):
    """The GAUGES in MiB (None where the server has no such gauge)."""
    found = dict.fromkeys(GAUGES.values())
    for line in request(connection, "GET", "/metrics").decode().splitlines():
        name, _, value = line.partition(" ")
        if name in GAUGES:
            found[GAUGES[name]] = round(float(value) / 2**20, 1)
    return found


def p99(values):
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * 0.99))] * 1000


def main():
    connection = http.client.HTTPConnection(HOST, timeout=60)
    rows = json.loads(request(connection, "GET", "/v1/sql?" + urlencode({
        "q": "SELECT d.agency, d.service FROM dossiers d JOIN services s ON s.code = d.service "
             "WHERE s.withdrawn_at IS NULL LIMIT 1"})))
    agency, service = rows[0]["agency"], rows[0]["service"]
    threads = [threading.Thread(target=appender, args=(agency, service), daemon=True)
               for _ in range(APPENDERS)]
    threads += [threading.Thread(target=batcher, args=(agency, service), daemon=True),
                threading.Thread(target=querier, daemon=True),
                threading.Thread(target=subscriber, daemon=True)]
    for thread in threads:
        thread.start()
    began = time.time()
    minutes = []
    minute = 0
    while time.time() < stop:
        minute += 1
        time.sleep(max(0, began + minute * 60 - time.time()))
        low, high = began + (minute - 1) * 60, began + minute * 60
        with lock:
            appends = [s for t, s in samples["append"] if low <= t < high]
            queries = [s for t, s in samples["query"] if low <= t < high]
            failed = len(failures)
        row = {"minute": minute, **resident(),
               "append_p99_ms": round(p99(appends), 2), "appends": len(appends),
               "query_p99_ms": round(p99(queries), 1), "queries": len(queries),
               "sse_events": sse_events[0], "failures": failed,
               **gauges(http.client.HTTPConnection(HOST, timeout=60))}
        minutes.append(row)
        print(json.dumps(row), flush=True)
    for thread in threads:
        thread.join(timeout=310)
    with open(OUT, "w") as out:
        json.dump({"minutes": minutes, "failures": failures[:20]}, out)
    if failures:
        print("failures:", *failures[:20], sep="\n  ")
        sys.exit(1)


main()
