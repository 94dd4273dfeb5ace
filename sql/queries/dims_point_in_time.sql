-- Point-in-time surrogate keys: for each (natural id, time) pair, the version valid at that time
-- (valid_from <= t < valid_to). A time before the first version resolves to version 1 (facts older
-- than the member's creation); a time after a closed (deleted) history resolves to the last
-- version. Unknown ids give NULL. Placeholders: {table} {key} {nat}; parameters: uuid[], timestamptz[].
SELECT q.ord,
       q.natural_id,
       q.at,
       coalesce(hit.k, edge.k) AS surrogate_key
FROM unnest(%s::uuid[], %s::timestamptz[]) WITH ORDINALITY AS q (natural_id, at, ord)
LEFT JOIN LATERAL (
    SELECT d.{key} AS k
    FROM {table} d
    WHERE d.{nat} = q.natural_id AND d.valid_from <= q.at AND q.at < d.valid_to
    LIMIT 1
) hit ON true
LEFT JOIN LATERAL (
    SELECT d.{key} AS k
    FROM {table} d
    WHERE d.{nat} = q.natural_id
    ORDER BY CASE WHEN q.at < d.valid_from THEN d.version ELSE -d.version END
    LIMIT 1
) edge ON hit.k IS NULL
ORDER BY q.ord
