"""New dossiers as NDJSON for `chiso import`, to append while a server is killed (SIGKILL under
batches, bench/national.sh and bench/restart_ab.sh KILL=1): N `DossierReceived` events, each in
a stream of its own, for one agency and service of the history.

    python3 bench/kill_batches.py AGENCY SERVICE N
"""

import json
import sys
import uuid

agency, service, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
try:
    for _ in range(count):
        print(json.dumps({"stream": f"dossier-kill-{uuid.uuid4()}", "id": str(uuid.uuid4()),
                          "type": "DossierReceived",
                          "data": {"agency": agency, "service": service, "channel": "online",
                                   "received_at": "2019-12-30T08:00:00+07:00",
                                   "due_at": "2020-01-06T17:00:00+07:00"}}))
except BrokenPipeError:
    # The importer reading the pipe went with the killed server.
    sys.stderr.close()
