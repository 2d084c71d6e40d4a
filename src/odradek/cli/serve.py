"""``odradek serve``: the engine behind the Arrow Flight door, as a process.

Settings come from, lowest precedence first: built-in defaults, a TOML file
(``--config`` / ``ODRADEK_CONFIG``), environment variables ``ODRADEK_*``, flags.
Lifecycle: open the node (the engine and its consumer groups, node.py), start the
metrics endpoint, the Flight server, the Kafka listener and the Schema Registry
listener over it, print one line containing ``ready``, then wait for SIGTERM or SIGINT;
on either, refuse new calls, let in-flight appends finish (at most
``limits.shutdown_drain_seconds_max``), close the node and exit 0. A second signal
exits at once.

Every door is bounded (docs/cli.md, "Bounds"): one in-flight byte budget shared by
the doors (``inflight_bytes``), and per door a cap on connections (the Flight door:
calls) in total and per peer address, an idle timeout and a deadline for a request to
arrive whole. Unset caps and idle timeouts keep each door's own default
(odradek.limits).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import gc
import json
import logging
import os
import select
import signal
import socket
import sys
import threading
import tomllib
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from odradek import defaults, limits
from odradek.budget import ByteBudget
from odradek.cluster.keys import validate_agent_id, validate_cluster_name
from odradek.config import parse_duration, parse_size
from odradek.errors import InvalidRequest, OdradekError
from odradek.node import Node
from odradek.protocols import connections, request_ids
from odradek.protocols.bounded_http import serving_authentication, serving_quotas, serving_tls
from odradek.protocols.flight.server import FlightService
from odradek.protocols.kafka import start_kafka_listener
from odradek.protocols.registry import start_registry_listener
from odradek.protocols.tls import ServerTls, TlsFiles
from odradek.storage.agent import StoreSettings
from odradek.storage.objects import ObjectStore, open_store

log = logging.getLogger("odradek.serve")


DEFAULT_KAFKA_LISTEN = "127.0.0.1:9092"
DEFAULT_REGISTRY_LISTEN = "127.0.0.1:8081"  # Confluent Schema Registry's default port
_OFF = ("", "off", "none", "false", "no", "0")


@dataclasses.dataclass
class Settings:
    data_dir: str = defaults.data_dir
    listen: str = defaults.listen
    kafka_listen: str | None = DEFAULT_KAFKA_LISTEN
    kafka_advertised: str | None = None
    kafka_listen_given: bool = False  # an explicit address must bind; the default may not
    # Topics a Kafka Metadata request names are created (Kafka's auto.create.topics.enable)
    # with this many partitions (Kafka's num.partitions, whose default is 1 too).
    kafka_auto_create: bool = True
    kafka_partitions: int = 1
    registry_listen: str | None = DEFAULT_REGISTRY_LISTEN
    registry_listen_given: bool = False  # as for kafka_listen
    metrics_listen: str | None = None
    fsync: bool = True
    log_format: str = "kv"  # "kv" (key=value; "text" is the same) or "json"
    log_level: str = "info"
    # Bounds of the doors; None keeps each door's own default (odradek.limits).
    inflight_bytes: int = limits.inflight_bytes_max_default
    connections_max: int | None = None
    connections_per_peer_max: int | None = None
    request_read_seconds: float = limits.request_read_seconds_default
    idle_seconds: float | None = None
    topics_max: int = limits.topics_max_default
    # An object store holding the data (the data directory is then its cache); None: none.
    store: str | None = None
    store_flush_ms: float = limits.store_flush_seconds_default * 1000
    store_flush_bytes: int = limits.store_flush_bytes_default
    # Settings of the store's client (obstore's configuration keys), over the environment's.
    store_options: dict[str, str] = dataclasses.field(default_factory=dict, repr=False)
    # Cluster mode (docs/cluster.md): etcd endpoints; None: a server on its own.
    etcd: str | None = None
    cluster: str = "default"
    agent_id: str | None = None  # None: the advertised address
    advertise: str | None = None  # None: the listen address
    lease_ttl: int = limits.cluster_lease_ttl_seconds_default
    # How many cells the cluster's topics are spread over (decision 0032); every agent of
    # a cluster is given the same count. 1: one cell, one agent serves everything.
    cells: int = 1
    # A secured etcd (docs/cluster.md, "Securing etcd"): TLS files (PEM) for https://
    # endpoints, a user and its password (from the environment or a file, never a flag).
    etcd_ca: str | None = None
    etcd_cert: str | None = None
    etcd_key: str | None = None
    etcd_user: str | None = None
    etcd_password_file: str | None = None
    etcd_password: str | None = dataclasses.field(default=None, repr=False)  # environment only
    # TLS on every door (docs/security.md): a PEM certificate chain and its key; a CA
    # turns on client certificates (mTLS). None: plaintext doors.
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_ca: str | None = None
    # Authentication (docs/security.md): users and API tokens of the data directory's
    # credential store on every door; a JWKS (file or URL) adds JWTs (OAUTHBEARER).
    # Without any (nor client certificates) every door must listen on loopback unless
    # ``insecure``.
    auth: bool = False
    # Authorization (decision 0020): every request checked against the access control
    # lists kept beside the credentials; what no binding allows is refused. Needs --auth.
    authorize: bool = False
    jwks: str | None = None
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    insecure: bool = False

    @property
    def authenticates(self) -> bool:
        """Whether the doors authenticate their clients (credentials or client certificates)."""
        return self.auth or self.jwks is not None or self.tls_ca is not None

    def tls_files(self) -> TlsFiles | None:
        """The TLS files of the doors (None: plaintext), checked to go together."""
        return TlsFiles.of(self.tls_cert, self.tls_key, self.tls_ca)

    def store_settings(self) -> StoreSettings:
        """The journal's settings for ``--store``."""
        return StoreSettings(flush_seconds=self.store_flush_ms / 1000, flush_bytes=self.store_flush_bytes)

    def door_bounds(self, defaults: connections.DoorLimits) -> connections.DoorLimits:
        """A door's bounds: its defaults with the settings given here."""
        return defaults.replace(
            connections_max=self.connections_max,
            connections_per_peer_max=self.connections_per_peer_max,
            idle_seconds=self.idle_seconds,
            request_seconds=self.request_read_seconds,
        )


_ENVIRONMENT = {
    "data_dir": "ODRADEK_DATA_DIR",
    "listen": "ODRADEK_LISTEN",
    "kafka_listen": "ODRADEK_KAFKA_LISTEN",
    "kafka_advertised": "ODRADEK_KAFKA_ADVERTISED",
    "kafka_auto_create": "ODRADEK_KAFKA_AUTO_CREATE",
    "kafka_partitions": "ODRADEK_KAFKA_PARTITIONS",
    "registry_listen": "ODRADEK_REGISTRY_LISTEN",
    "metrics_listen": "ODRADEK_METRICS_LISTEN",
    "fsync": "ODRADEK_FSYNC",
    "log_format": "ODRADEK_LOG_FORMAT",
    "log_level": "ODRADEK_LOG_LEVEL",
    "inflight_bytes": "ODRADEK_INFLIGHT_BYTES",
    "connections_max": "ODRADEK_CONNECTIONS_MAX",
    "connections_per_peer_max": "ODRADEK_CONNECTIONS_PER_PEER_MAX",
    "request_read_seconds": "ODRADEK_REQUEST_READ_SECONDS",
    "idle_seconds": "ODRADEK_IDLE_SECONDS",
    "topics_max": "ODRADEK_TOPICS_MAX",
    "store": "ODRADEK_STORE",
    "store_flush_ms": "ODRADEK_STORE_FLUSH_MS",
    "store_flush_bytes": "ODRADEK_STORE_FLUSH_BYTES",
    "store_options": "ODRADEK_STORE_OPTIONS",
    "etcd": "ODRADEK_ETCD",
    "cluster": "ODRADEK_CLUSTER",
    "agent_id": "ODRADEK_AGENT_ID",
    "advertise": "ODRADEK_ADVERTISE",
    "lease_ttl": "ODRADEK_LEASE_TTL",
    "cells": "ODRADEK_CELLS",
    "etcd_ca": "ODRADEK_ETCD_CA",
    "etcd_cert": "ODRADEK_ETCD_CERT",
    "etcd_key": "ODRADEK_ETCD_KEY",
    "etcd_user": "ODRADEK_ETCD_USER",
    "etcd_password_file": "ODRADEK_ETCD_PASSWORD_FILE",
    "etcd_password": "ODRADEK_ETCD_PASSWORD",
    "tls_cert": "ODRADEK_TLS_CERT",
    "tls_key": "ODRADEK_TLS_KEY",
    "tls_ca": "ODRADEK_TLS_CA",
    "auth": "ODRADEK_AUTH",
    "authorize": "ODRADEK_AUTHORIZE",
    "jwks": "ODRADEK_JWKS",
    "jwt_audience": "ODRADEK_JWT_AUDIENCE",
    "jwt_issuer": "ODRADEK_JWT_ISSUER",
    "insecure": "ODRADEK_INSECURE",
}
# The secured-etcd settings, all text; an empty value is none.
_ETCD_SECURITY = ("etcd_ca", "etcd_cert", "etcd_key", "etcd_user", "etcd_password_file", "etcd_password")
# The doors' TLS files (paths); an empty value is none.
_TLS = ("tls_cert", "tls_key", "tls_ca")
# Authentication settings that are text; an empty value is none.
_AUTH = ("jwks", "jwt_audience", "jwt_issuer")
_LOOPBACK = ("localhost", "::1")


def check_exposure(settings: Settings) -> None:
    """Safe defaults: without authentication every door listens on loopback only; a
    door on another address is refused unless ``--insecure`` (docs/security.md)."""
    if settings.authenticates or settings.insecure:
        return
    doors = (
        ("--listen", settings.listen),
        ("--kafka-listen", settings.kafka_listen),
        ("--registry-listen", settings.registry_listen),
        ("--metrics-listen", settings.metrics_listen),
    )
    for flag, address in doors:
        if address is None:
            continue
        host = split_address(address, flag)[0]
        if host not in _LOOPBACK and not host.startswith("127."):
            raise InvalidRequest(
                f"{flag} {address} is not a loopback address and no authentication is configured: "
                "give --auth (users and tokens: odradek user add, odradek token create), --jwks, or "
                "--tls-ca (client certificates), or --insecure to serve it to anyone who reaches it "
                "(see docs/security.md)"
            )


def jwt_validator(settings: Settings) -> Any:
    """The JWKS of ``--jwks``, read (or fetched) now: a bad one stops the server at start."""
    if settings.jwks is None:
        return None
    from odradek.security.jwks import JwtValidator

    return JwtValidator(settings.jwks, audience=settings.jwt_audience, issuer=settings.jwt_issuer)


def authenticator_of(settings: Settings, credentials: Any, validator: Any) -> Any:
    """The doors' authenticator over the credential store (None: no authentication)."""
    if not (settings.auth or settings.jwks is not None):
        if settings.authorize:
            raise InvalidRequest("--authorize needs --auth (or --jwks): a request's principal must be known")
        return None
    from odradek.security import Authenticator

    authenticator = Authenticator(credentials, validator, mtls=settings.tls_ca is not None)
    if settings.authorize:
        from odradek.security.authorizer import enable_authorization

        enable_authorization(authenticator)  # the bindings beside the credentials (decision 0020)
    return authenticator


def settings_from(args: argparse.Namespace, environ: dict[str, str]) -> Settings:
    """Defaults, then the config file, then the environment, then the flags."""
    values: dict[str, Any] = {}
    config_path = args.config or environ.get("ODRADEK_CONFIG")
    if config_path:
        values.update(_read_config(config_path))
    for field, variable in _ENVIRONMENT.items():
        if variable in environ:
            values[field] = environ[variable]
    flags = {
        "data_dir": args.data_dir,
        "listen": args.listen,
        "kafka_listen": args.kafka_listen,
        "kafka_advertised": args.kafka_advertised,
        "kafka_auto_create": getattr(args, "kafka_auto_create", None),
        "kafka_partitions": getattr(args, "kafka_partitions", None),
        "registry_listen": getattr(args, "registry_listen", None),
        "metrics_listen": args.metrics_listen,
        "log_format": args.log_format,
        "log_level": args.log_level,
        "store": getattr(args, "store", None),
        "store_options": getattr(args, "store_option", None),
        "etcd": getattr(args, "etcd", None),
        "cluster": getattr(args, "cluster", None),
        "agent_id": getattr(args, "agent_id", None),
        "advertise": getattr(args, "advertise", None),
        **{name: getattr(args, name, None) for name in _ETCD_SECURITY if name != "etcd_password"},
        **{name: getattr(args, name, None) for name in _TLS},
        **{name: getattr(args, name, None) for name in _AUTH},
        "auth": True if getattr(args, "auth", False) else None,
        "authorize": True if getattr(args, "authorize", False) else None,
        "insecure": True if getattr(args, "insecure", False) else None,
    }
    flags.update({name: getattr(args, name, None) for name in _BOUNDS})
    values.update({name: value for name, value in flags.items() if value is not None})
    if args.no_fsync:
        values["fsync"] = False
    for door in ("kafka_listen", "registry_listen"):
        if door in values:
            listen = str(values[door]).strip()
            values[door] = None if listen.lower() in _OFF else listen
            values[f"{door}_given"] = values[door] is not None
    if "fsync" in values:
        values["fsync"] = _boolean(values["fsync"], "fsync")
    for name in ("auth", "authorize", "insecure"):
        if name in values:
            values[name] = _boolean(values[name], name)
    for name in _AUTH:
        if name in values:
            values[name] = str(values[name]).strip() or None
    if "kafka_auto_create" in values:
        values["kafka_auto_create"] = _boolean(values["kafka_auto_create"], "kafka_auto_create")
    if "kafka_partitions" in values:
        values["kafka_partitions"] = _kafka_partitions(values["kafka_partitions"], "kafka_partitions")
    if values.get("log_format", "kv") not in ("kv", "text", "json"):  # text: kv's other name
        raise InvalidRequest(f"log format must be 'kv' (or 'text') or 'json', got {values['log_format']!r}")
    for name, parse in _BOUNDS.items():
        if name in values:
            values[name] = parse(values[name], name)
    if "store" in values:
        store = str(values["store"]).strip()
        values["store"] = None if store.lower() in _OFF else store
    if "store_options" in values:
        values["store_options"] = _store_options(values["store_options"])
    for name in ("etcd", "agent_id", "advertise"):
        if name in values:
            text = str(values[name]).strip()
            values[name] = None if text.lower() in _OFF else text
    for name in _ETCD_SECURITY:
        if name in values:
            text = str(values[name]) if name == "etcd_password" else str(values[name]).strip()
            values[name] = text or None
    if values.get("etcd") is not None:
        from odradek.cluster.etcd import endpoints_tls  # the cluster extra (aetcd)
        from odradek.cluster.etcd_client import check_security_settings

        tls = endpoints_tls(values["etcd"])  # a clear error now rather than at join
        if values.get("store") is None:
            raise InvalidRequest("--etcd needs --store: a cluster's data lives in an object store")
        check_security_settings(  # the files are read when the agent starts
            tls,
            ca=values.get("etcd_ca"),
            cert=values.get("etcd_cert"),
            key=values.get("etcd_key"),
            user=values.get("etcd_user"),
            password_given=values.get("etcd_password") is not None
            or values.get("etcd_password_file") is not None,
        )
    elif any(values.get(name) is not None for name in _ETCD_SECURITY if name != "etcd_password"):
        raise InvalidRequest(
            "--etcd-ca/--etcd-cert/--etcd-key/--etcd-user are settings of --etcd: give it too"
        )
    for name in _TLS:
        if name in values:
            values[name] = str(values[name]).strip() or None
    TlsFiles.of(values.get("tls_cert"), values.get("tls_key"), values.get("tls_ca"))  # read at start
    if "cluster" in values:
        values["cluster"] = validate_cluster_name(str(values["cluster"]).strip())
    if values.get("agent_id") is not None:
        validate_agent_id(values["agent_id"])
    if values.get("advertise") is not None:
        split_address(values["advertise"], "--advertise")
    return Settings(**values)


def _store_options(value: object) -> dict[str, str]:
    """``KEY=VALUE`` pairs: a list (flags), comma-separated text (the environment) or a
    TOML table."""
    if isinstance(value, dict):
        pairs = [(str(key), value[key]) for key in value]
    else:
        items = value if isinstance(value, list) else str(value).split(",")
        pairs = []
        for item in items:
            text = str(item).strip()
            if not text:
                continue
            key, equals, option = text.partition("=")
            if not equals or not key.strip():
                raise InvalidRequest(f"a store option must be KEY=VALUE, got {text!r}")
            pairs.append((key, option))
    options: dict[str, str] = {}
    for key, option in pairs:
        if isinstance(option, bool):
            option = "true" if option else "false"
        if not isinstance(option, (str, int, float)):
            raise InvalidRequest(f"store option {key!r} must be text, got {option!r}")
        options[key.strip().lower()] = str(option).strip()
    return options


def _count(value: object, name: str) -> int:
    text = str(value).strip()
    if isinstance(value, bool) or not text.isdigit() or int(text) < 1:
        raise InvalidRequest(f"{name} must be a whole number of at least 1, got {value!r}")
    return int(text)


def _kafka_partitions(value: object, name: str) -> int:
    count = _count(value, name)
    if count > limits.kafka_partitions_max:
        raise InvalidRequest(f"{name} must be from 1 to {limits.kafka_partitions_max}, got {value!r}")
    return count


def _seconds(value: object, name: str) -> float:
    seconds = parse_duration(value, name)
    if seconds is None:
        raise InvalidRequest(f"{name} must be a duration like '30s' or a number of seconds, got {value!r}")
    return seconds


def _flush_ms(value: object, name: str) -> float:
    text = str(value).strip()
    try:
        milliseconds = float(text)
    except ValueError:
        milliseconds = float("nan")
    low, high = limits.store_flush_seconds_min * 1000, limits.store_flush_seconds_max * 1000
    if isinstance(value, bool) or not low <= milliseconds <= high:  # NaN too
        raise InvalidRequest(
            f"{name} must be a number of milliseconds from {low:g} to {high:g}, got {value!r}"
        )
    return milliseconds


def _flush_bytes(value: object, name: str) -> int:
    size = _bytes(value, name)
    if not limits.store_flush_bytes_min <= size <= limits.store_flush_bytes_max:
        raise InvalidRequest(
            f"{name} must be from {limits.store_flush_bytes_min} to {limits.store_flush_bytes_max} bytes, "
            f"got {value!r}"
        )
    return size


def _lease_ttl(value: object, name: str) -> int:
    text = str(value).strip()
    low, high = limits.cluster_lease_ttl_seconds_min, limits.cluster_lease_ttl_seconds_max
    if isinstance(value, bool) or not text.isdigit() or not low <= int(text) <= high:
        raise InvalidRequest(f"{name} must be a whole number of seconds from {low} to {high}, got {value!r}")
    return int(text)


def _cells(value: object, name: str) -> int:
    text = str(value).strip()
    high = limits.cluster_cells_max
    if isinstance(value, bool) or not text.isdigit() or not 1 <= int(text) <= high:
        raise InvalidRequest(f"{name} must be a whole number of cells from 1 to {high}, got {value!r}")
    return int(text)


def _bytes(value: object, name: str) -> int:
    size = parse_size(value, name)
    if size is None:
        raise InvalidRequest(f"{name} must be a size like '512MiB' or a number of bytes, got {value!r}")
    return size


# The bounds settings and how each is read (flags, environment and TOML alike).
_BOUNDS = {
    "inflight_bytes": _bytes,
    "connections_max": _count,
    "connections_per_peer_max": _count,
    "request_read_seconds": _seconds,
    "idle_seconds": _seconds,
    "topics_max": _count,
    "store_flush_ms": _flush_ms,
    "store_flush_bytes": _flush_bytes,
    "lease_ttl": _lease_ttl,
    "cells": _cells,
}


def _read_config(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            document = tomllib.load(handle)
    except OSError as exc:
        raise InvalidRequest(f"cannot read config file {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise InvalidRequest(f"config file {path} is not valid TOML: {exc}") from exc
    section = document.get("serve", document)
    if "etcd_password" in section:
        raise InvalidRequest(
            f"config file {path}: etcd_password is not read from a file of settings; set "
            "ODRADEK_ETCD_PASSWORD or name a file holding only the password with etcd_password_file"
        )
    known = {field.name for field in dataclasses.fields(Settings)}
    unknown = sorted(set(section) - known - {"serve"})
    if unknown:
        raise InvalidRequest(f"config file {path}: unknown setting(s) {unknown}; known: {sorted(known)}")
    return {name: value for name, value in section.items() if name in known}


def _boolean(value: object, name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise InvalidRequest(f"{name} must be true or false, got {value!r}")


def split_address(address: str, what: str) -> tuple[str, int]:
    """``(host, port)`` from ``HOST:PORT`` (``[::1]:PORT`` for IPv6)."""
    host, separator, port = address.rpartition(":")
    if not separator or not port.isdigit() or not host or int(port) > 65535:
        raise InvalidRequest(f"{what} must be HOST:PORT (e.g. 127.0.0.1:8815), got {address!r}")
    return host.strip("[]"), int(port)


Address = tuple[str, int]


def listen_addresses(settings: Settings) -> tuple[Address, Address | None, Address | None, Address | None]:
    """Where the Flight door, the metrics endpoint, the Kafka and the Schema Registry
    doors listen (None: off), each checked."""

    def optional(address: str | None, flag: str) -> Address | None:
        return split_address(address, flag) if address else None

    return (
        split_address(settings.listen, "--listen"),
        optional(settings.metrics_listen, "--metrics-listen"),
        optional(settings.kafka_listen, "--kafka-listen"),
        optional(settings.registry_listen, "--registry-listen"),
    )


def grpc_location(host: str, port: int, tls: bool = False) -> str:
    """``grpc://host:port`` (an IPv6 host in brackets); ``grpc+tls://`` with TLS."""
    scheme = "grpc+tls" if tls else "grpc"
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def server_tls(settings: Settings) -> ServerTls | None:
    """The doors' TLS, its files read and checked now (None: plaintext doors)."""
    files = settings.tls_files()
    return None if files is None else ServerTls(files)


def http_scheme(tls: ServerTls | None) -> str:
    return "https" if tls is not None else "http"


# -- logging -------------------------------------------------------------------------------


class StructuredFormatter(logging.Formatter):
    """One line per event: ``ts=… level=… logger=… msg="…" key=value…`` or one JSON object.

    Fields beyond the message come from ``extra={"fields": {...}}``.
    """

    def __init__(self, style: str) -> None:
        super().__init__()
        self.json = style == "json"

    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {
            "ts": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = request_ids.current.get()
        if request_id is not None:  # the request a door serves (protocols/request_ids.py)
            event["request_id"] = request_id
        event.update(getattr(record, "fields", {}))
        if record.exc_info:
            event["error"] = self.formatException(record.exc_info).replace("\n", " | ")
        if self.json:
            return json.dumps(event, default=str)
        return " ".join(f"{key}={_kv_value(value)}" for key, value in event.items())


def _kv_value(value: object) -> str:
    text = str(value)
    if text and all(c.isalnum() or c in "-_.:/+@[]" for c in text):
        return text
    return json.dumps(text)


def setup_logging(settings: Settings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(StructuredFormatter(settings.log_format))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())


# -- running --------------------------------------------------------------------------------


def quota_manager(engine: Any, data_dir: str) -> Any:
    """The doors' client quotas, their settings where the credentials are (security/quotas.py):
    the object store's, read again every ``limits.security_refresh_seconds``, else the
    data directory's."""
    from odradek.security.quotas import QuotaManager, QuotaSettings

    if engine.store is not None:
        settings = QuotaSettings.in_object_store(engine.store.store)
        settings.refresh_every()
    else:
        settings = QuotaSettings.open(data_dir)
    return QuotaManager(settings)


def run(settings: Settings) -> int:
    if settings.etcd is not None:
        from odradek.cli.serve_agent import run_agent  # the cluster extra (aetcd)

        return run_agent(settings)
    setup_logging(settings)
    (host, port), metrics_address, kafka_address, registry_address = listen_addresses(settings)
    check_exposure(settings)
    tls = server_tls(settings)  # bad files: refused before the data is opened
    validator = jwt_validator(settings)  # a bad JWKS: refused before the data is opened
    store_options: dict[str, Any] = {}
    if settings.store is not None:
        store: str | ObjectStore = settings.store
        if settings.store_options:
            store = open_store(settings.store, options=settings.store_options)
        store_options = {"store": store, "store_settings": settings.store_settings()}
    elif settings.store_options:
        raise InvalidRequest("store options were given without a store (--store URL)")
    node = Node.open(settings.data_dir, fsync=settings.fsync, topics_max=settings.topics_max, **store_options)
    engine = node.engine
    budget = ByteBudget(settings.inflight_bytes)
    try:
        from odradek.security import CredentialStore

        # Users and tokens (security/): in the object store with --store (the data
        # directory is only its cache), else in the data directory.
        if engine.store is not None:
            credentials = CredentialStore.in_object_store(engine.store.store)
        else:
            credentials = CredentialStore.open(settings.data_dir)
        authenticator = authenticator_of(settings, credentials, validator)
        quotas = quota_manager(engine, settings.data_dir)
        engine.tenant_storage.quota = quotas.settings.storage_quota  # tenants' storage_bytes
        observer = None
        metrics = None
        if metrics_address is not None:
            from odradek.protocols.metrics import Metrics  # only servers need prometheus

            observer = Metrics(node)
            with (
                serving_tls(tls.context if tls is not None else None),
                serving_authentication(authenticator),
                serving_quotas(quotas),
            ):
                metrics = observer.serve(*metrics_address, settings.door_bounds(connections.METRICS))
        location = grpc_location(host, port, tls is not None)
        try:
            server = FlightService(
                node,
                location,
                observer=observer,
                bounds=settings.door_bounds(connections.FLIGHT),
                budget=budget,
                tls=tls,
                authenticator=authenticator,
                credentials=credentials,
                quotas=quotas,
            )
        except (pa.ArrowException, OSError) as exc:
            raise OdradekError(f"cannot listen on {settings.listen}: {exc}") from exc
        kafka = None
        try:
            if kafka_address:
                kafka = start_kafka_listener(
                    node,
                    *kafka_address,
                    settings.kafka_advertised,
                    auto_create_topics=settings.kafka_auto_create,
                    default_partitions=settings.kafka_partitions,
                    bounds=settings.door_bounds(connections.KAFKA),
                    budget=budget,
                    tls=tls.context if tls is not None else None,
                    authenticator=authenticator,
                    quotas=quotas,
                    metering=observer.metering if observer is not None else None,
                )
        except OSError as exc:
            if settings.kafka_listen_given:
                raise OdradekError(f"cannot listen on {settings.kafka_listen}: {exc}") from exc
            log.warning(
                "Kafka listener off: the default address is not free",
                extra={"fields": {"address": settings.kafka_listen, "error": str(exc)}},
            )
        registry = None
        try:
            if registry_address:
                with (
                    serving_tls(tls.context if tls is not None else None),
                    serving_authentication(authenticator),
                    serving_quotas(quotas, observer.metering if observer is not None else None),
                ):
                    registry = start_registry_listener(
                        engine,
                        engine.path,
                        *registry_address,
                        bounds=settings.door_bounds(connections.REGISTRY),
                        budget=budget,
                    )
        except OSError as exc:
            if settings.registry_listen_given:
                if kafka is not None:
                    kafka.close()
                raise OdradekError(f"cannot listen on {settings.registry_listen}: {exc}") from exc
            log.warning(
                "Schema Registry listener off: the default address is not free",
                extra={"fields": {"address": settings.registry_listen, "error": str(exc)}},
            )
    except BaseException:
        node.close()
        raise
    url = grpc_location(host, server.port, tls is not None)
    stop = threading.Event()
    stopping = install_signal_handlers(stop, reload=tls.reload if tls is not None else None)
    scheme = http_scheme(tls)
    fields = {
        "url": url,
        "data_dir": os.path.abspath(settings.data_dir),
        "fsync": settings.fsync,
        "metrics": f"{scheme}://{metrics.host}:{metrics.port}/metrics" if metrics is not None else "off",
        "kafka": kafka.bootstrap if kafka else "off",
        "registry": registry.url.replace("http://", f"{scheme}://", 1) if registry else "off",
        "inflight_bytes": settings.inflight_bytes,
        "pid": os.getpid(),
        **(tls.describe() if tls is not None else {"tls": "off"}),
        "authentication": authenticator.describe()
        if authenticator is not None
        else _unauthenticated(settings),
    }
    store = ""
    if engine.store is not None:  # the store's URL (never a credential) and its recovery
        fields.update(engine.store.describe())
        store = f" store={engine.store.url}"
    # What start made (modules, topics, doors) lives as long as the server: frozen out of
    # the collector's sight, a full collection scans only what requests make, and stalls
    # every request in flight for a few ms instead of tens (decision 0011's latency notes).
    gc.freeze()
    log.info("ready", extra={"fields": fields})
    authentication = "" if settings.authenticates else " authentication=none (no authentication)"
    # Every listener on the ready line (off: not listening), so a user sees where each door is.
    listeners = " ".join(f"{door}={fields[door]}" for door in ("kafka", "registry", "metrics"))
    print(
        f"odradek ready url={url} {listeners} data_dir={fields['data_dir']}{store}{authentication}",
        flush=True,
    )
    while not stopping.wait(3600):
        pass
    log.info("shutting down: draining in-flight requests")
    if registry is not None:
        registry.close()
    if kafka is not None:
        kafka.close()
    if metrics is not None:
        metrics.close()
    drained = server.drain(limits.shutdown_drain_seconds_max)
    if not drained:
        log.warning(
            "requests still running after the drain period; closing the engine anyway",
            extra={"fields": {"drain_seconds": limits.shutdown_drain_seconds_max}},
        )
    node.close()
    log.info("stopped")
    if not drained:
        logging.shutdown()
        sys.stdout.flush()
        os._exit(0)  # gRPC threads still hold calls open; the engine is closed and synced
    return 0


def _unauthenticated(settings: Settings) -> str:
    if settings.tls_ca is not None:
        return "mtls"
    return "none (no authentication" + (", --insecure)" if settings.insecure else ", loopback only)")


class StopSignal:
    """Waits for SIGTERM or SIGINT (see :func:`install_signal_handlers`).

    The kernel gives a process's signal to any of its threads. Python runs the handler
    on the main thread, but a main thread blocked in ``Event.wait`` is only woken when
    the signal happens to land on it: given to a gRPC or asyncio thread instead, the
    stop waited for the wait's timeout (an hour). So the main thread waits in
    ``select`` on a socket that ``signal.set_wakeup_fd`` writes to from whichever thread
    received the signal, and the handler runs as soon as it returns to Python code."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self._read, self._write = socket.socketpair()
        self._read.setblocking(False)
        self._write.setblocking(False)
        signal.set_wakeup_fd(self._write.fileno(), warn_on_full_buffer=False)

    def wait(self, timeout: float) -> bool:
        """True once a stop was asked for; False after ``timeout`` seconds without."""
        if not self.stop.is_set():
            select.select([self._read], [], [], timeout)
            with contextlib.suppress(BlockingIOError):
                while self._read.recv(4096):
                    pass
        return self.stop.is_set()


def install_signal_handlers(stop: threading.Event, reload: Callable[[], object] | None = None) -> StopSignal:
    """SIGTERM and SIGINT set ``stop`` (a second one exits at once); with ``reload``
    (TLS on), SIGHUP runs it on a thread of its own (loading files is no work for a
    signal handler). Wait with the StopSignal returned (main thread only)."""

    def handle(signum: int, _frame: object) -> None:
        if stop.is_set():
            log.warning("second signal: exiting at once")
            os._exit(1)
        log.info("received %s", signal.Signals(signum).name)
        stop.set()

    def hang_up(_signum: int, _frame: object) -> None:
        if reload is not None:
            threading.Thread(target=reload, name="odradek-tls-reload", daemon=True).start()

    waiter = StopSignal(stop)
    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    if reload is not None:
        signal.signal(signal.SIGHUP, hang_up)
    return waiter
