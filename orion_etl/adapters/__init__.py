"""Adapters to the outside world: PostgreSQL, Kafka, Kafka Connect. The only modules doing I/O."""
