"""The `odradek` command line: `serve` and the client commands."""
