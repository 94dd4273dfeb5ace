-- agg_client_metrics for one period bucket, from `base` (no second scan of fact_trades).
-- A client has a row when it traded, realized P&L (a position change) or has risk snapshots in
-- the bucket. Position deltas and risk snapshots are aggregated per client BEFORE the joins, so
-- they never multiply with trades.
-- engagement = LEAST(1, trading_days / days_in_period * 0.4 + LEAST(trades, 100) / 100 * 0.3
--                       + LEAST(instruments, 20) / 20 * 0.3); days_in_period >= 1 (calendar days).
-- realized_pnl = sum of the realized P&L deltas of the client's position changes timed in the
-- bucket's trading days (= per position, cumulative realized_pnl at the end minus at the start;
-- docs/aggregates.md); 0 without changes; NULL only while the warehouse has no position history.
INSERT INTO agg_client_metrics (
    tenant_id, client_id, metric_date, period_type, period_end,
    trading_days, total_trades, unique_instruments, total_volume, total_notional,
    avg_trade_size, total_fees, realized_pnl, avg_utilization, max_utilization, breach_count,
    risk_score, engagement_score, notional_rank)
SELECT tenant_id, client_id, %(start)s, %(period)s, %(end)s,
       COALESCE(c.trading_days, 0), COALESCE(c.trades, 0), COALESCE(c.instruments, 0),
       COALESCE(c.volume, 0), COALESCE(c.notional, 0),
       c.notional / NULLIF(c.trades, 0), COALESCE(c.fees, 0),
       CASE WHEN p.pnl IS NOT NULL THEN p.pnl WHEN EXISTS (SELECT 1 FROM fact_positions) THEN 0 END,
       COALESCE(r.avg_util, 0), COALESCE(r.max_util, 0), COALESCE(r.breaches, 0), r.risk_score,
       LEAST(1.0, COALESCE(c.trading_days, 0)::numeric / %(days)s * 0.4
                  + LEAST(COALESCE(c.trades, 0), 100)::numeric / 100 * 0.3
                  + LEAST(COALESCE(c.instruments, 0), 20)::numeric / 20 * 0.3),
       rank() OVER (PARTITION BY tenant_id ORDER BY COALESCE(c.notional, 0) DESC)
FROM (
    SELECT tenant_id, client_id,
           count(DISTINCT trade_date_key) AS trading_days,
           sum(n)                         AS trades,
           count(DISTINCT instrument_id)  AS instruments,
           sum(vol)                       AS volume,
           sum(notional)                  AS notional,
           sum(fees)                      AS fees
    FROM base
    GROUP BY tenant_id, client_id
) c
FULL JOIN (
    SELECT tenant_id, client_id, sum(realized_pnl_delta) AS pnl
    FROM fact_positions
    WHERE change_date_key >= %(start_key)s AND change_date_key < %(end_key)s
    GROUP BY tenant_id, client_id
) p USING (tenant_id, client_id)
FULL JOIN (
    SELECT tenant_id, client_id,
           avg(utilization_pct)                       AS avg_util,
           max(utilization_pct)                       AS max_util,
           sum(soft_breach_count + hard_breach_count) AS breaches,
           avg(risk_score)                            AS risk_score
    FROM fact_risk_snapshots
    WHERE snapshot_time >= %(start_ts)s AND snapshot_time < %(end_ts)s
    GROUP BY tenant_id, client_id
) r USING (tenant_id, client_id)
RETURNING 1
