-- agg_daily_trade_summary for one period bucket at the five levels in one pass over `base`.
-- GROUPING(client_id, instrument_id, lp_id) has a bit set for each column NOT grouped:
-- 7 = tenant, 3 = client, 5 = instrument, 6 = LP, 1 = client x instrument.
-- Averages are derived from the stored exact sums, exactly as the intraday merge derives them.
INSERT INTO agg_daily_trade_summary (
    tenant_id, period_type, trade_date, trade_date_key, period_end, aggregation_level,
    client_id, instrument_id, lp_id, trade_count, buy_count, sell_count,
    total_volume, buy_volume, sell_volume, total_notional, total_fees,
    sum_price, sum_price_qty, sum_latency_ms,
    avg_price, vwap_price, min_price, max_price, avg_latency_ms, max_latency_ms, is_final)
SELECT tenant_id, %(period)s, %(start)s, %(start_key)s, %(end)s,
       CASE GROUPING(client_id, instrument_id, lp_id)
           WHEN 7 THEN 'TENANT' WHEN 3 THEN 'CLIENT' WHEN 5 THEN 'INSTRUMENT' WHEN 6 THEN 'LP'
           ELSE 'CLIENT_INSTRUMENT' END,
       client_id, instrument_id, lp_id,
       sum(n), sum(n_buy), sum(n_sell),
       sum(vol), sum(vol_buy), sum(vol_sell), sum(notional), sum(fees),
       sum(sum_price), sum(sum_qp), sum(sum_latency),
       sum(sum_price) / sum(n),
       sum(sum_qp) / NULLIF(sum(vol), 0),
       min(min_price), max(max_price),
       sum(sum_latency) / sum(n),
       max(max_latency),
       %(is_final)s
FROM base
GROUP BY GROUPING SETS (
    (tenant_id),
    (tenant_id, client_id),
    (tenant_id, instrument_id),
    (tenant_id, lp_id),
    (tenant_id, client_id, instrument_id))
RETURNING 1
