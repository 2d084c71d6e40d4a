"""Clients: embedded (in-process engine) and remote (Arrow Flight), one API."""
