-- Consistency checks of one period bucket, recorded as etl_data_quality_issues of the run.
-- 1. every level sums to the TENANT level (trade count, volume, notional);
-- 2. TENANT trade counts equal the count of (non-deleted) facts;
-- 3. client metrics sum to the TENANT trade count;
-- 4. VWAP lies between min and max price;  5. no negative volumes;
-- 6. the facts' trading-day keys agree with their execution times under the configured trading day;
-- 7. tenant realized P&L (sum of its clients' metrics) equals the sum of the position deltas of the
--    bucket; 8. tenant breach count equals the risk snapshots' breaches; 9. every client's
--    utilization satisfies 0 <= avg <= max.
WITH s AS (
    SELECT * FROM agg_daily_trade_summary WHERE period_type = %(period)s AND trade_date = %(start)s
), tenant AS (
    SELECT tenant_id, trade_count, total_volume, total_notional FROM s WHERE aggregation_level = 'TENANT'
), lvl AS (
    SELECT tenant_id, aggregation_level, sum(trade_count) AS c, sum(total_volume) AS v,
           sum(total_notional) AS n
    FROM s WHERE aggregation_level <> 'TENANT' GROUP BY tenant_id, aggregation_level
), facts AS (
    SELECT tenant_id, count(*) AS c,
           count(*) FILTER (WHERE trade_date < %(start_ts)s OR trade_date >= %(end_ts)s) AS off_day
    FROM fact_trades
    WHERE trade_date_key >= %(start_key)s AND trade_date_key < %(end_key)s AND NOT is_deleted
    GROUP BY tenant_id
), clients AS (
    SELECT tenant_id, sum(total_trades) AS c, sum(realized_pnl) AS pnl, sum(breach_count) AS breaches
    FROM agg_client_metrics
    WHERE period_type = %(period)s AND metric_date = %(start)s GROUP BY tenant_id
), pnl_facts AS (
    SELECT tenant_id, sum(realized_pnl_delta) AS pnl FROM fact_positions
    WHERE change_date_key >= %(start_key)s AND change_date_key < %(end_key)s GROUP BY tenant_id
), risk_facts AS (
    SELECT tenant_id, sum(soft_breach_count + hard_breach_count) AS breaches FROM fact_risk_snapshots
    WHERE snapshot_time >= %(start_ts)s AND snapshot_time < %(end_ts)s GROUP BY tenant_id
), checks AS (
    SELECT 'level_sums_to_tenant' AS rule_name, t.tenant_id::text AS record_id,
           format('level %%s: trades %%s / volume %%s / notional %%s, tenant has %%s / %%s / %%s',
                  lv.level, COALESCE(l.c, 0), COALESCE(l.v, 0), COALESCE(l.n, 0),
                  t.trade_count, t.total_volume, t.total_notional) AS message,
           jsonb_build_object('level', lv.level) AS data
    FROM tenant t
    CROSS JOIN (VALUES ('CLIENT'), ('INSTRUMENT'), ('LP'), ('CLIENT_INSTRUMENT')) lv (level)
    LEFT JOIN lvl l ON l.tenant_id = t.tenant_id AND l.aggregation_level = lv.level
    WHERE COALESCE(l.c, 0) <> t.trade_count OR COALESCE(l.v, 0) <> t.total_volume
       OR COALESCE(l.n, 0) <> t.total_notional
    UNION ALL
    SELECT 'trade_count_equals_facts', COALESCE(f.tenant_id, t.tenant_id)::text,
           format('summary has %%s trades, fact_trades has %%s', COALESCE(t.trade_count, 0), COALESCE(f.c, 0)),
           NULL
    FROM facts f FULL JOIN tenant t ON t.tenant_id = f.tenant_id
    WHERE COALESCE(f.c, 0) <> COALESCE(t.trade_count, 0)
    UNION ALL
    SELECT 'client_metrics_sum_to_tenant', t.tenant_id::text,
           format('client metrics have %%s trades, tenant summary %%s', COALESCE(c.c, 0), t.trade_count),
           NULL
    FROM tenant t LEFT JOIN clients c ON c.tenant_id = t.tenant_id
    WHERE COALESCE(c.c, 0) <> t.trade_count
    UNION ALL
    SELECT 'vwap_within_price_range', s.id::text,
           format('%%s row: vwap %%s outside [%%s, %%s]', s.aggregation_level, s.vwap_price, s.min_price, s.max_price),
           jsonb_build_object('level', s.aggregation_level, 'client_id', s.client_id,
                              'instrument_id', s.instrument_id, 'lp_id', s.lp_id)
    FROM s WHERE s.vwap_price < s.min_price OR s.vwap_price > s.max_price
    UNION ALL
    SELECT 'no_negative_volume', s.id::text,
           format('%%s row: volume %%s (buy %%s, sell %%s)', s.aggregation_level, s.total_volume,
                  s.buy_volume, s.sell_volume),
           jsonb_build_object('level', s.aggregation_level, 'client_id', s.client_id,
                              'instrument_id', s.instrument_id, 'lp_id', s.lp_id)
    FROM s WHERE s.total_volume < 0 OR s.buy_volume < 0 OR s.sell_volume < 0
    UNION ALL
    SELECT 'trading_day_key', f.tenant_id::text,
           format('%%s facts carry a trade_date_key of this period but executed outside it', f.off_day),
           NULL
    FROM facts f WHERE f.off_day > 0
    UNION ALL
    SELECT 'realized_pnl_equals_facts', COALESCE(p.tenant_id, c.tenant_id)::text,
           format('client metrics realize %%s, position changes of the period %%s',
                  COALESCE(c.pnl, 0), COALESCE(p.pnl, 0)),
           NULL
    FROM pnl_facts p FULL JOIN clients c ON c.tenant_id = p.tenant_id
    WHERE COALESCE(p.pnl, 0) <> COALESCE(c.pnl, 0)
    UNION ALL
    SELECT 'breach_count_equals_facts', COALESCE(r.tenant_id, c.tenant_id)::text,
           format('client metrics count %%s breaches, risk snapshots of the period %%s',
                  COALESCE(c.breaches, 0), COALESCE(r.breaches, 0)),
           NULL
    FROM risk_facts r FULL JOIN clients c ON c.tenant_id = r.tenant_id
    WHERE COALESCE(r.breaches, 0) <> COALESCE(c.breaches, 0)
    UNION ALL
    SELECT 'utilization_within_bounds', m.client_id::text,
           format('avg utilization %%s, max %%s', m.avg_utilization, m.max_utilization),
           jsonb_build_object('client_id', m.client_id)
    FROM agg_client_metrics m
    WHERE m.period_type = %(period)s AND m.metric_date = %(start)s
      AND (m.avg_utilization < 0 OR m.avg_utilization > m.max_utilization)
)
INSERT INTO etl_data_quality_issues
    (job_run_id, source_table, record_id, rule_name, severity, error_message, record_data)
SELECT %(run_id)s,
       CASE WHEN rule_name IN ('realized_pnl_equals_facts',
                               'breach_count_equals_facts', 'utilization_within_bounds')
            THEN 'agg_client_metrics' ELSE 'agg_daily_trade_summary' END,
       record_id, rule_name, 'ERROR',
       format('%%s %%s: %%s', lower(%(period)s), %(start)s, message),
       COALESCE(data, '{}'::jsonb) || jsonb_build_object('period_type', %(period)s, 'period_start', %(start)s)
FROM checks
RETURNING rule_name, record_id, error_message
