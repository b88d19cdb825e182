-- The PostgreSQL peer of a projection rebuild: the same events (loaded with COPY before the
-- clock starts), folded set-wise into the dossiers table and its daily counts, with the
-- same definitions (local dates at +07:00; pauses move the due time; timeliness by date).
\timing on
SET TIME ZONE '+07:00';
DROP TABLE IF EXISTS pg_dossiers, pg_daily;
CREATE TABLE pg_dossiers AS
SELECT substr(stream, 9) AS id,
       max(data->>'agency') FILTER (WHERE type = 'DossierReceived') AS agency,
       max(data->>'channel') FILTER (WHERE type = 'DossierReceived') AS channel,
       max((data->>'received_at')::timestamptz) FILTER (WHERE type = 'DossierReceived') AS received_at,
       max((data->>'due_at')::timestamptz) FILTER (WHERE type = 'DossierReceived') AS due_at,
       max((data->>'at')::timestamptz) FILTER (WHERE type = 'DossierResolved') AS resolved_at,
       max((data->>'at')::timestamptz) FILTER (WHERE type = 'DossierWithdrawn') AS withdrawn_at,
       coalesce(sum(extract(epoch FROM (data->>'at')::timestamptz)) FILTER (WHERE type = 'DossierResumed'), 0)
         - coalesce(sum(extract(epoch FROM (data->>'at')::timestamptz)) FILTER (WHERE type = 'DossierPaused'), 0) AS paused_seconds,
       bool_or((data->>'online')::boolean) FILTER (WHERE type = 'DossierPaid') AS paid_online,
       max((data->>'score')::int) FILTER (WHERE type = 'DossierRated') AS rating
FROM events WHERE stream LIKE 'dossier-%' GROUP BY stream;
ALTER TABLE pg_dossiers ADD COLUMN timeliness text;
UPDATE pg_dossiers SET timeliness = CASE
  WHEN resolved_at::date < (due_at + paused_seconds * interval '1 second')::date THEN 'early'
  WHEN resolved_at::date = (due_at + paused_seconds * interval '1 second')::date THEN 'on_time'
  ELSE 'late' END WHERE resolved_at IS NOT NULL;
CREATE TABLE pg_daily AS
SELECT day, agency, sum(received) AS received, sum(resolved) AS resolved, sum(in_time) AS in_time FROM (
  SELECT received_at::date AS day, agency, 1 AS received, 0 AS resolved, 0 AS in_time FROM pg_dossiers
  UNION ALL
  SELECT resolved_at::date, agency, 0, 1, (timeliness <> 'late')::int FROM pg_dossiers WHERE resolved_at IS NOT NULL
) t GROUP BY day, agency;
