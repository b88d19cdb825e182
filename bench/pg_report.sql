-- The PostgreSQL peer of dossier_report(DATE '2019-01-01', DATE '2019-12-31') on pg_dossiers.
SELECT agency,
  count(*) FILTER (WHERE received_at < '2019-01-01' AND coalesce(resolved_at, withdrawn_at, 'infinity') >= '2019-01-01') AS carried_over,
  count(*) FILTER (WHERE received_at >= '2019-01-01' AND channel = 'online') AS received_online,
  count(*) FILTER (WHERE received_at >= '2019-01-01' AND channel <> 'online') AS received_direct_postal,
  count(*) FILTER (WHERE resolved_at >= '2019-01-01' AND resolved_at < '2020-01-01' AND timeliness = 'early') AS resolved_early,
  count(*) FILTER (WHERE resolved_at >= '2019-01-01' AND resolved_at < '2020-01-01' AND timeliness = 'on_time') AS resolved_on_time,
  count(*) FILTER (WHERE resolved_at >= '2019-01-01' AND resolved_at < '2020-01-01' AND timeliness = 'late') AS resolved_late,
  count(*) FILTER (WHERE withdrawn_at >= '2019-01-01' AND withdrawn_at < '2020-01-01') AS withdrawn,
  count(*) FILTER (WHERE coalesce(resolved_at, withdrawn_at, 'infinity') >= '2020-01-01') AS open_total
FROM pg_dossiers
WHERE received_at < '2020-01-01'
  AND NOT (received_at < '2019-01-01' AND coalesce(resolved_at, withdrawn_at, 'infinity') < '2019-01-01')
GROUP BY agency;
