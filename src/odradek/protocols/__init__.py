"""Network doors over the engine: Arrow Flight (native) and, later, Kafka."""
