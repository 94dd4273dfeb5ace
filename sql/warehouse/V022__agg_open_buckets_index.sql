-- Issue 15: `aggregate --intraday` marks summary rows final once their bucket has ended (as a full
-- recompute writes them). Only rows of open buckets are not final: a small partial index finds
-- them without scanning the summaries.
CREATE INDEX IF NOT EXISTS idx_agg_trade_summary_open
    ON agg_daily_trade_summary (trade_date) WHERE NOT is_final;
