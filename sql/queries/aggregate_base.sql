-- One scan of fact_trades, pre-grouped at the finest grain every aggregate needs
-- (tenant, client, instrument, LP, trading day). Every later rollup reads these rows, which are
-- far fewer than the facts. All measures are exact sums/min/max, so rolling them up is exact.
-- The WHERE fragment is fixed SQL chosen by the job (bucket key range or intraday delta).
SELECT tenant_id, client_id, instrument_id, lp_id, trade_date_key,
       count(*)                                                 AS n,
       count(*) FILTER (WHERE side = 'BUY')                     AS n_buy,
       count(*) FILTER (WHERE side = 'SELL')                    AS n_sell,
       sum(quantity)                                            AS vol,
       COALESCE(sum(quantity) FILTER (WHERE side = 'BUY'), 0)   AS vol_buy,
       COALESCE(sum(quantity) FILTER (WHERE side = 'SELL'), 0)  AS vol_sell,
       sum(notional_value)                                      AS notional,
       sum(fees)                                                AS fees,
       sum(price)                                               AS sum_price,
       sum(quantity * price)                                    AS sum_qp,
       min(price)                                               AS min_price,
       max(price)                                               AS max_price,
       sum(fill_latency_ms)                                     AS sum_latency,
       max(fill_latency_ms)                                     AS max_latency
FROM fact_trades
WHERE NOT is_deleted AND {where}
GROUP BY tenant_id, client_id, instrument_id, lp_id, trade_date_key
