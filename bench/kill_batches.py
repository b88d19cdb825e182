"""New dossiers as NDJSON for `chiso import`, to append while a server is killed (SIGKILL under
batches, bench/national.sh and bench/restart_ab.sh KILL=1): N `DossierReceived` events, each in
a stream of its own, for one agency and service of province 26 that the server at URL holds.

    python3 bench/kill_batches.py URL N
"""

import json
import sys
import urllib.request
import uuid

url, count = sys.argv[1], int(sys.argv[2])
query = {"sql": "SELECT agency, service FROM dossiers WHERE province = '26' LIMIT 1"}
request = urllib.request.Request(f"{url}/v1/sql", json.dumps(query).encode(),
                                 {"content-type": "application/json"})
with urllib.request.urlopen(request) as answer:
    row = json.load(answer)[0]
try:
    for _ in range(count):
        print(json.dumps({"stream": f"dossier-kill-{uuid.uuid4()}", "id": str(uuid.uuid4()),
                          "type": "DossierReceived",
                          "data": {"agency": row["agency"], "service": row["service"],
                                   "channel": "online",
                                   "received_at": "2019-12-30T08:00:00+07:00",
                                   "due_at": "2020-01-06T17:00:00+07:00"}}))
except BrokenPipeError:
    # The importer reading the pipe went with the killed server.
    sys.stderr.close()
