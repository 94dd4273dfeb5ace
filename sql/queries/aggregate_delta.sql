-- Intraday running aggregates: add the trades loaded since the last run (rows of `base`, keyed by
-- trading day) to the DAILY summary rows. Counts and sums add, min/max combine, averages are
-- re-derived from the summed exact parts: the result equals a full recompute of the day.
INSERT INTO agg_daily_trade_summary AS a (
    tenant_id, period_type, trade_date, trade_date_key, period_end, aggregation_level,
    client_id, instrument_id, lp_id, trade_count, buy_count, sell_count,
    total_volume, buy_volume, sell_volume, total_notional, total_fees,
    sum_price, sum_price_qty, sum_latency_ms,
    avg_price, vwap_price, min_price, max_price, avg_latency_ms, max_latency_ms, is_final)
SELECT tenant_id, 'DAILY', to_date(trade_date_key::text, 'YYYYMMDD'), trade_date_key,
       to_date(trade_date_key::text, 'YYYYMMDD') + 1,
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
       false
FROM base
GROUP BY GROUPING SETS (
    (trade_date_key, tenant_id),
    (trade_date_key, tenant_id, client_id),
    (trade_date_key, tenant_id, instrument_id),
    (trade_date_key, tenant_id, lp_id),
    (trade_date_key, tenant_id, client_id, instrument_id))
ON CONFLICT ON CONSTRAINT uq_agg_trade_summary_period DO UPDATE SET
    trade_count    = a.trade_count + EXCLUDED.trade_count,
    buy_count      = a.buy_count + EXCLUDED.buy_count,
    sell_count     = a.sell_count + EXCLUDED.sell_count,
    total_volume   = a.total_volume + EXCLUDED.total_volume,
    buy_volume     = a.buy_volume + EXCLUDED.buy_volume,
    sell_volume    = a.sell_volume + EXCLUDED.sell_volume,
    total_notional = a.total_notional + EXCLUDED.total_notional,
    total_fees     = a.total_fees + EXCLUDED.total_fees,
    sum_price      = a.sum_price + EXCLUDED.sum_price,
    sum_price_qty  = a.sum_price_qty + EXCLUDED.sum_price_qty,
    sum_latency_ms = a.sum_latency_ms + EXCLUDED.sum_latency_ms,
    avg_price      = (a.sum_price + EXCLUDED.sum_price) / (a.trade_count + EXCLUDED.trade_count),
    vwap_price     = (a.sum_price_qty + EXCLUDED.sum_price_qty)
                     / NULLIF(a.total_volume + EXCLUDED.total_volume, 0),
    min_price      = LEAST(a.min_price, EXCLUDED.min_price),
    max_price      = GREATEST(a.max_price, EXCLUDED.max_price),
    avg_latency_ms = (a.sum_latency_ms + EXCLUDED.sum_latency_ms) / (a.trade_count + EXCLUDED.trade_count),
    max_latency_ms = GREATEST(a.max_latency_ms, EXCLUDED.max_latency_ms),
    updated_at     = now()
RETURNING trade_date_key
