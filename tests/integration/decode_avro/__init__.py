"""Integration tests of `cdcflow decode --format debezium-avro`."""
