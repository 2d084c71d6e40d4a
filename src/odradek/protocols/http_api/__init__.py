"""The HTTP/JSON API with Server-Sent Events: Odradek with curl, from any language.

Served under ``/v1/`` (and ``/openapi.json``) on the Schema Registry door's listener,
which brings its TLS, authentication and connection bounds (decision 0022). Modules:
``routes.py`` answers requests without IO, ``records.py`` turns records into JSON and
back, ``events.py`` makes a topic's tail an event stream, ``openapi.py`` is the OpenAPI
3.1 document (the one description of the API), ``errors.py`` the error shape. See
docs/http-api.md.
"""

from __future__ import annotations

from odradek.protocols.http_api.events import EventStream
from odradek.protocols.http_api.routes import ApiRequest, ApiResponse, HttpApi, owns

__all__ = ["ApiRequest", "ApiResponse", "EventStream", "HttpApi", "owns"]
