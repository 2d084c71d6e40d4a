"""The web console: a browser's view of a server, served at ``/ui`` (docs/console.md).

The console is a client of the HTTP API (protocols/http_api) and of the Schema Registry
endpoints on the same listener, with the same authentication. Modules: ``static.py``
serves the built assets (committed under ``static/``, built from ``console/`` at the
repository's root, decision 0025); ``api.py`` answers the few endpoints the console
needs that the HTTP API has no reason to hold (topic sizes with rates, a pattern's tail,
the cluster's agents), under ``/v1/console/``; ``openapi.py`` describes them in the
HTTP API's OpenAPI document; ``tail.py`` is the pattern's tail as Server-Sent Events.

Nothing is imported here: the HTTP API's document imports ``openapi.py`` while the
HTTP API itself is being imported.
"""
