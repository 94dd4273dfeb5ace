-- The Kafka record that last wrote a trade or order row, as typed columns like fact_quotes'
-- (src_topic, src_partition, src_offset) instead of the JSONB document of V010: the loader COPYs
-- three plain values faster than it parses a JSON document per row (docs/benchmarks.md), and the
-- columns compare and index directly. Existing rows are converted; lineage does not change
-- aggregates, so the dirty-bucket triggers of V030 (when present) are off meanwhile.
ALTER TABLE fact_trades ADD COLUMN src_topic TEXT, ADD COLUMN src_partition INTEGER, ADD COLUMN src_offset BIGINT;
ALTER TABLE fact_orders ADD COLUMN src_topic TEXT, ADD COLUMN src_partition INTEGER, ADD COLUMN src_offset BIGINT;

DO $$
DECLARE
    fact TEXT;
    has_trigger BOOLEAN;
BEGIN
    FOREACH fact IN ARRAY ARRAY['fact_trades', 'fact_orders'] LOOP
        SELECT EXISTS (
            SELECT 1 FROM pg_trigger WHERE tgrelid = fact::regclass AND tgname = format('trg_%s_dirty_upd', fact)
        ) INTO has_trigger;
        IF has_trigger THEN
            EXECUTE format('ALTER TABLE %I DISABLE TRIGGER %I', fact, format('trg_%s_dirty_upd', fact));
        END IF;
        EXECUTE format(
            'UPDATE %I SET src_topic = src_kafka ->> ''topic'', '
            'src_partition = (src_kafka ->> ''partition'')::integer, '
            'src_offset = (src_kafka ->> ''offset'')::bigint WHERE src_kafka IS NOT NULL',
            fact
        );
        IF has_trigger THEN
            EXECUTE format('ALTER TABLE %I ENABLE TRIGGER %I', fact, format('trg_%s_dirty_upd', fact));
        END IF;
        EXECUTE format('ALTER TABLE %I DROP COLUMN src_kafka', fact);
    END LOOP;
END $$;
