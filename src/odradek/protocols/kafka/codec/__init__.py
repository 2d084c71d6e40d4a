"""The Kafka wire protocol without IO: primitives, message schemas, framing and the
(api_key, version) table, record batches to and from Arrow, compression."""
