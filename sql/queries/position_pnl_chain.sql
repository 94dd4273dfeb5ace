-- Realized P&L deltas of the staged position changes (stg_fact_positions) and of the stored
-- changes that follow them in source order (fact_positions in V050, WarehouseLoader._positions).
-- Per position the chain starts at the stored change just before the batch's earliest new one
-- (the anchor, whose own delta is not touched). A CDC stream only appends, so the usual batch
-- reads one stored row per position; an out-of-order change (a DLQ replay) also re-chains the
-- stored changes after it, and only those whose delta changes are updated (which marks their
-- aggregation buckets dirty through the table's triggers).
WITH first_new AS (
    SELECT DISTINCT ON (position_id) position_id, src_commit_lsn AS c, src_lsn AS l
    FROM stg_fact_positions
    ORDER BY position_id, src_commit_lsn, src_lsn
), chain AS (
    SELECT s.position_id, s.src_commit_lsn, s.src_lsn, s.realized_pnl, s.is_deleted, s.src_op, 'new' AS kind
    FROM stg_fact_positions s
    UNION ALL
    SELECT f.position_id, f.src_commit_lsn, f.src_lsn, f.realized_pnl, f.is_deleted, f.src_op, f.kind
    FROM first_new n
    CROSS JOIN LATERAL (
        (SELECT p.position_id, p.src_commit_lsn, p.src_lsn, p.realized_pnl, p.is_deleted, p.src_op,
                'anchor' AS kind
         FROM fact_positions p
         WHERE p.position_id = n.position_id AND (p.src_commit_lsn, p.src_lsn) < (n.c, n.l)
         ORDER BY p.src_commit_lsn DESC, p.src_lsn DESC
         LIMIT 1)
        UNION ALL
        SELECT p.position_id, p.src_commit_lsn, p.src_lsn, p.realized_pnl, p.is_deleted, p.src_op, 'later'
        FROM fact_positions p
        WHERE p.position_id = n.position_id AND (p.src_commit_lsn, p.src_lsn) > (n.c, n.l)
    ) f
), deltas AS (
    SELECT position_id, src_commit_lsn, src_lsn, kind,
           CASE
               WHEN is_deleted THEN 0                                  -- a delete realizes nothing
               WHEN prev_deleted IS NULL AND src_op = 'r' THEN 0       -- first seen in a snapshot: baseline
               WHEN prev_deleted IS NULL OR prev_deleted THEN COALESCE(realized_pnl, 0)  -- a new life
               ELSE COALESCE(realized_pnl, 0) - COALESCE(prev_pnl, 0)
           END AS delta
    FROM (
        SELECT *, lag(realized_pnl) OVER w AS prev_pnl, lag(is_deleted) OVER w AS prev_deleted
        FROM chain
        WINDOW w AS (PARTITION BY position_id ORDER BY src_commit_lsn, src_lsn)
    ) ordered
), staged AS (
    UPDATE stg_fact_positions s SET realized_pnl_delta = d.delta
    FROM deltas d
    WHERE d.kind = 'new' AND d.position_id = s.position_id
      AND d.src_commit_lsn = s.src_commit_lsn AND d.src_lsn = s.src_lsn
    RETURNING 1
), later AS (
    UPDATE fact_positions f SET realized_pnl_delta = d.delta, updated_at = now()
    FROM deltas d
    WHERE d.kind = 'later' AND d.position_id = f.position_id
      AND d.src_commit_lsn = f.src_commit_lsn AND d.src_lsn = f.src_lsn
      AND f.realized_pnl_delta IS DISTINCT FROM d.delta
    RETURNING 1
)
SELECT (SELECT count(*) FROM staged), (SELECT count(*) FROM later)
