-- `orion-etl dims check`: SCD2 invariants of one dimension. Placeholders: {table} {nat}.
-- Versions of a member are ordered by version; each must start where the previous one ended
-- (half-open [valid_from, valid_to) intervals, no overlap, no gap), version numbers run 1..n,
-- exactly one current version (the latest, open-ended) unless the member was deleted (closed).
-- The one allowed gap: between a version closed by a deletion and the member's re-creation.
WITH v AS (
    SELECT d.{nat} AS natural_id, d.version, d.valid_from, d.valid_to, d.is_current, d.is_deleted,
           lag(d.valid_to) OVER w AS prev_to,
           lag(d.is_deleted) OVER w AS prev_deleted,
           row_number() OVER w AS rn,
           count(*) FILTER (WHERE d.is_current) OVER p AS n_current,
           max(d.version) OVER p AS max_version
    FROM {table} d
    WINDOW w AS (PARTITION BY d.{nat} ORDER BY d.version), p AS (PARTITION BY d.{nat})
)
SELECT 'multiple_current' AS check_name, count(DISTINCT natural_id) AS violations,
       (array_agg(DISTINCT natural_id::text))[1:5] AS samples
FROM v WHERE n_current > 1
UNION ALL
SELECT 'no_current_version', count(*), (array_agg(natural_id::text))[1:5]
FROM v WHERE n_current = 0 AND version = max_version AND NOT is_deleted
UNION ALL
SELECT 'current_not_latest', count(*), (array_agg(natural_id::text))[1:5]
FROM v WHERE is_current AND version <> max_version
UNION ALL
SELECT 'current_not_open_ended', count(*), (array_agg(natural_id::text))[1:5]
FROM v WHERE is_current AND valid_to <> 'infinity'
UNION ALL
SELECT 'closed_but_open_ended', count(*), (array_agg(natural_id::text))[1:5]
FROM v WHERE NOT is_current AND valid_to = 'infinity'
UNION ALL
SELECT 'overlapping_intervals', count(*), (array_agg(natural_id::text))[1:5]
FROM v WHERE prev_to > valid_from
UNION ALL
SELECT 'gapped_intervals', count(*), (array_agg(natural_id::text))[1:5]
FROM v WHERE prev_to < valid_from AND NOT prev_deleted
UNION ALL
SELECT 'version_not_contiguous', count(*), (array_agg(natural_id::text))[1:5]
FROM v WHERE version <> rn
