"""Broker-side schemas: compiling Avro, JSON Schema and Arrow schemas into typed Arrow
columns, checking compatibility between versions, and validating values."""
