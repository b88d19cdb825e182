"""What the log did during a phase, from two scrapes of chiso's /metrics (before, after): the
group commits' fsync time (p50, p99 and the slowest, from the histogram's buckets between the
scrapes) and what RocksDB owed and was running at each end. Used by bench/adhoc.sh and
bench/national.sh to tell a slow append from a slow disk or a busy compaction.

    python3 bench/log_state.py BEFORE.txt AFTER.txt
"""

import sys


def scrape(path):
    values = {}
    for line in open(path):
        if line.startswith("#") or " " not in line:
            continue
        name, value = line.rsplit(" ", 1)
        values[name] = float(value)
    return values


def quantile(buckets, q):
    """The upper bound of the bucket holding quantile q of the counts (cumulative buckets)."""
    total = buckets[-1][1]
    if total == 0:
        return None
    for bound, count in buckets:
        if count >= q * total:
            return bound
    return buckets[-1][0]


before, after = scrape(sys.argv[1]), scrape(sys.argv[2])
prefix = "chiso_log_fsync_seconds_bucket{le=\""
buckets = sorted(
    (float(name[len(prefix):-2]), after[name] - before.get(name, 0.0))
    for name in after
    if name.startswith(prefix)
)
commits = after.get("chiso_log_fsync_seconds_count", 0) - before.get("chiso_log_fsync_seconds_count", 0)
p50, p99 = quantile(buckets, 0.5), quantile(buckets, 0.99)
# The slowest commits: a single stall of the whole log hides below p99 of thousands of
# commits, yet it holds every client at once (and wrk's latencies, corrected for the requests
# it could not send meanwhile, show it at p99).
slowest = quantile(buckets, 1.0)
# Commits slower than the first bucket bound from 100 ms up.
cut, within = next(((b, c) for b, c in buckets if b >= 0.1), (float("inf"), buckets[-1][1]))
slow = buckets[-1][1] - within
show = lambda s: "—" if s is None else ("≤ +Inf" if s == float("inf") else f"≤ {s * 1000:.1f} ms")
owed = lambda m: m.get("chiso_log_compaction_pending_bytes", 0) / 2**20
running = lambda m: int(m.get("chiso_log_compactions_running", 0))
print(
    f"log: {commits:.0f} group commits, fsync p50 {show(p50)}, p99 {show(p99)}, slowest "
    f"{show(slowest)} ({slow:.0f} over {cut * 1000:.0f} ms); "
    f"compactions owed {owed(before):.0f} → {owed(after):.0f} MiB, running {running(before)} → {running(after)}"
)
