-- agg_client_metrics for one period bucket, from `base` (no second scan of fact_trades).
-- Risk snapshots are aggregated per client BEFORE the join, so they never multiply with trades.
-- engagement = LEAST(1, trading_days / days_in_period * 0.4 + LEAST(trades, 100) / 100 * 0.3
--                       + LEAST(instruments, 20) / 20 * 0.3); days_in_period >= 1 (calendar days).
-- realized_pnl: NULL, not available from warehouse facts (docs/aggregates.md).
INSERT INTO agg_client_metrics (
    tenant_id, client_id, metric_date, period_type, period_end,
    trading_days, total_trades, unique_instruments, total_volume, total_notional,
    avg_trade_size, total_fees, realized_pnl, avg_utilization, max_utilization, breach_count,
    risk_score, engagement_score, notional_rank)
SELECT c.tenant_id, c.client_id, %(start)s, %(period)s, %(end)s,
       c.trading_days, c.trades, c.instruments, c.volume, c.notional,
       c.notional / c.trades, c.fees, NULL,
       COALESCE(r.avg_util, 0), COALESCE(r.max_util, 0), COALESCE(r.breaches, 0), r.risk_score,
       LEAST(1.0, c.trading_days::numeric / %(days)s * 0.4
                  + LEAST(c.trades, 100)::numeric / 100 * 0.3
                  + LEAST(c.instruments, 20)::numeric / 20 * 0.3),
       rank() OVER (PARTITION BY c.tenant_id ORDER BY c.notional DESC)
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
LEFT JOIN (
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
