"""orion-etl: Debezium/Kafka CDC into a PostgreSQL star-schema warehouse."""

__version__ = "0.1.0"
