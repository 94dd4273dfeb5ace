-- agg_lp_performance (LP over all instruments) for one period bucket. Quotes by timestamp
-- (half-open trading-day bounds), orders by trading-day key, trades from `base`.
-- fill_rate = orders with a fill / orders routed to the LP (NULL when none were routed);
-- rejection_count = orders the LP rejected;
-- performance = availability/100 * 0.25 + (1 - clamp(spread_bps, 0, 100) / 100) * 0.35
--             + (1 - clamp(latency_ms, 0, 1000) / 1000) * 0.20 + fill_rate * 0.20,
-- missing quotes count as worst (availability 0, spread 100 bps, latency 1000 ms), no orders as 0.
INSERT INTO agg_lp_performance (
    tenant_id, lp_id, instrument_id, metric_date, period_type, period_end,
    quote_count, avg_spread, avg_spread_bps, quote_availability_pct, avg_latency_ms,
    trade_count, total_notional, order_count, fill_rate, rejection_count,
    overall_rank, performance_score)
WITH q AS (
    SELECT tenant_id, lp_id, count(*) AS quote_count, avg(spread) AS avg_spread,
           avg(spread_bps) AS avg_spread_bps,
           100.0 * count(*) FILTER (WHERE NOT is_stale) / count(*) AS availability_pct,
           avg(latency_ms) AS avg_latency_ms
    FROM fact_quotes
    WHERE quote_timestamp >= %(start_ts)s AND quote_timestamp < %(end_ts)s
    GROUP BY tenant_id, lp_id
), o AS (
    SELECT tenant_id, lp_id, count(*) AS order_count,
           count(*) FILTER (WHERE filled_quantity > 0)::numeric / count(*) AS fill_rate,
           count(*) FILTER (WHERE was_rejected) AS rejections
    FROM fact_orders
    WHERE order_date_key >= %(start_key)s AND order_date_key < %(end_key)s
      AND NOT is_deleted AND lp_id IS NOT NULL
    GROUP BY tenant_id, lp_id
), t AS (
    SELECT tenant_id, lp_id, sum(n) AS trade_count, sum(notional) AS notional
    FROM base WHERE lp_id IS NOT NULL
    GROUP BY tenant_id, lp_id
), k AS (
    SELECT tenant_id, lp_id FROM q UNION SELECT tenant_id, lp_id FROM o
    UNION SELECT tenant_id, lp_id FROM t
), scored AS (
    SELECT k.tenant_id, k.lp_id, q.quote_count, q.avg_spread, q.avg_spread_bps, q.availability_pct,
           q.avg_latency_ms, t.trade_count, t.notional, o.order_count, o.fill_rate, o.rejections,
           round(COALESCE(q.availability_pct, 0) / 100 * 0.25
                 + (1 - GREATEST(LEAST(COALESCE(q.avg_spread_bps, 100), 100), 0) / 100) * 0.35
                 + (1 - GREATEST(LEAST(COALESCE(q.avg_latency_ms, 1000), 1000), 0) / 1000) * 0.20
                 + COALESCE(o.fill_rate, 0) * 0.20, 8) AS score
    FROM k
    LEFT JOIN q USING (tenant_id, lp_id)
    LEFT JOIN o USING (tenant_id, lp_id)
    LEFT JOIN t USING (tenant_id, lp_id)
)
SELECT tenant_id, lp_id, NULL, %(start)s, %(period)s, %(end)s,
       COALESCE(quote_count, 0), avg_spread, avg_spread_bps, availability_pct, avg_latency_ms,
       COALESCE(trade_count, 0), COALESCE(notional, 0), COALESCE(order_count, 0), fill_rate,
       COALESCE(rejections, 0),
       rank() OVER (PARTITION BY tenant_id ORDER BY score DESC),
       score
FROM scored
RETURNING 1
