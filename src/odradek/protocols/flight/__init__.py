"""Arrow Flight, the native door: ``messages`` (wire encoding, no IO) and ``server``."""
