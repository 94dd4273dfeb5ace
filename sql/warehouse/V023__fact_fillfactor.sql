-- Issue 15: re-keying (a late dimension version moves facts to the version valid at their time)
-- updates only a dimension key, which no index covers. With free space left on the page such an
-- update is HOT: the new row version stays on its page and none of the fact table's seven indexes
-- gets an entry. Measured (scripts/bench_rekey.py, 100,000 clients / 1,000,000 trades, 1% of the
-- clients changed): writing ~5,000 re-keyed trades took ~490 ms with full pages. The loader's
-- upserts of existing trades and orders (corrections, order progress) profit the same way.
-- Applies to pages written from now on; existing pages get it on their next rewrite (optional).
ALTER TABLE fact_trades SET (fillfactor = 90);
ALTER TABLE fact_orders SET (fillfactor = 90);
ALTER TABLE fact_risk_snapshots SET (fillfactor = 90);
