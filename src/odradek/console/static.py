"""The console's built assets at ``/ui``, without sockets.

Only the files of the build are served: the directory ``static/`` is listed once and a
request names one of its files or nothing (``/ui/`` is ``index.html``); no path is ever
joined from a request, so ``..`` and the like find nothing. ``index.html`` is never
cached (it names the assets of the current build); the assets carry a hash of their
content in their names, so a browser may keep them.
"""

from __future__ import annotations

import functools
from importlib import resources

from odradek import limits
from odradek.protocols.http_api import ApiResponse
from odradek.protocols.http_api.routes import error_response

UI_PREFIX = "/ui"
INDEX = "index.html"
# What the build makes, by suffix.
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".json": "application/json",
    ".ico": "image/x-icon",
    ".png": "image/png",
}
# The build's record of the sources it was made from (tests/console checks it).
BUILD_STAMP = "build.json"
SECURITY_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("Content-Security-Policy", "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:"),
    ("X-Frame-Options", "DENY"),
)


def owns_ui(path: str) -> bool:
    """Whether ``path`` is the console's (``/ui`` and below)."""
    return path == UI_PREFIX or path.startswith(UI_PREFIX + "/")


@functools.cache
def files() -> dict[str, bytes]:
    """The built files by their path under ``/ui/`` (read once, each bounded)."""
    root = resources.files("odradek.console") / "static"
    found: dict[str, bytes] = {}

    def walk(folder: resources.abc.Traversable, prefix: str) -> None:
        for entry in folder.iterdir():
            name = prefix + entry.name
            if entry.is_dir():
                walk(entry, name + "/")
            elif entry.name.endswith(tuple(CONTENT_TYPES)):
                data = entry.read_bytes()
                if len(data) > limits.console_static_file_bytes_max:
                    continue  # not a file of the build
                found[name] = data

    if root.is_dir():
        walk(root, "")
    return found


def serve_static(method: str, path: str) -> ApiResponse:
    """The answer to ``method path`` under ``/ui``."""
    if method != "GET":
        return _with_allow(error_response("method_not_allowed", f"{method} is not allowed on {path}", 405))
    if path == UI_PREFIX:  # relative asset paths need the trailing slash
        return ApiResponse(308, b"", "text/plain", (("Location", UI_PREFIX + "/"),))
    name = path[len(UI_PREFIX) + 1 :] or INDEX
    built = files()
    data = built.get(name)
    if data is None:
        if INDEX not in built:
            message = "the console is not built in this installation (see docs/console.md)"
            return error_response("not_found", message, 404)
        return error_response("not_found", f"no such file of the console: {path}", 404)
    suffix = name[name.rfind(".") :]
    cache = "no-cache" if name == INDEX else "public, max-age=31536000, immutable"
    if not name.startswith("assets/"):
        cache = "no-cache"
    return ApiResponse(200, data, CONTENT_TYPES[suffix], (("Cache-Control", cache), *SECURITY_HEADERS))


def _with_allow(response: ApiResponse) -> ApiResponse:
    return ApiResponse(response.status, response.body, response.content_type, (("Allow", "GET"),))
