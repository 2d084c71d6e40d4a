"""Where a cluster keeps its state in etcd, and how each value is encoded (no IO).

Key layout, one prefix per cluster (``--cluster NAME``, default ``default``)::

    /odradek/<cluster>/agents/<agent id>       AgentRecord   bound to the agent's lease
    /odradek/<cluster>/owners/<topic>          OwnerRecord   bound to the owner's lease
    /odradek/<cluster>/catalog/topics/<topic>  TopicRecord   no lease: the catalog outlives agents
    /odradek/<cluster>/catalog/cells/<topic>   PlacementRecord  which cell holds the topic; no lease
    /odradek/<cluster>/catalog/shapes/<topic>  ShapeRecord   the topic's Kafka id and partitions, as
                                               the agent serving its cell last wrote them
    /odradek/<cluster>/transactions/<id hash>/<cell>
                                               a Kafka transaction's enlistment of a cell
                                               other than the home cell (decision 0037):
                                               opaque JSON the Kafka doors write; no lease
    /odradek/<cluster>/security/<document>     the security documents (credentials.json,
                                               acls.json, quotas.json): checksummed JSON
                                               (storage/documents.py), no lease (decision 0029)

Values are compact JSON objects with a format number ``v``, so a later version can add
fields and an older agent refuses what it cannot read instead of misreading it. An
owner's *epoch* is not in its value: it is the etcd revision at which the owner key was
created (its ``create_revision``, equal to its ``mod_revision`` since owner keys are
never updated), so it is strictly greater than every earlier owner's epoch of any
topic, and a comparison on the key's ``mod_revision`` tells whether that owner still
holds the topic (decision record 0012).

Every key and value is bounded (``limits.cluster_*``); names are checked before any key
is built, so a bad name is an ``InvalidRequest`` and never a strange key in etcd.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from typing import Any, TypeVar

from odradek import limits
from odradek.errors import DataDamaged, InvalidRequest, RequestTooLarge
from odradek.names import validate_topic_name
from odradek.schemas.ids import SPAN as SCHEMA_ID_SPAN

T = TypeVar("T")
ROOT = "/odradek/"
FORMAT = 1
DEFAULT_CLUSTER = "default"

_CLUSTER_NAME = re.compile(r"[A-Za-z0-9_-]+")
# An agent id is printable ASCII without '/' (a hostname, a pod name, a UUID).
_AGENT_ID = re.compile(r"[A-Za-z0-9_.:@-]+")
DOORS = ("kafka", "registry", "metrics")  # an agent's doors besides Flight, as registered
_SECURITY_DOCUMENT = re.compile(r"security/[a-z_]+\.json")
_HASH = re.compile(r"[0-9a-f]{64}")
_ADDRESS = re.compile(r"[A-Za-z0-9_.:\[\]-]+:[0-9]{1,5}")

# A cluster's cells: the home cell at the store prefix's root, then _cell.1, _cell.2, ...
# under cells/1/, cells/2/, ... (decision 0031).
HOME_CELL = "_cell"
_CELL = re.compile(r"_cell(?:\.([1-9][0-9]*))?")


def validate_cluster_name(name: object) -> str:
    if not isinstance(name, str) or not _CLUSTER_NAME.fullmatch(name):
        raise InvalidRequest(f"invalid cluster name {name!r}: letters, digits, '_' and '-' only")
    if len(name) > limits.cluster_name_length_max:
        raise InvalidRequest(
            f"cluster name is {len(name)} characters long, at most {limits.cluster_name_length_max}"
        )
    return name


_HEX_64 = re.compile("[0-9a-f]{64}")


def validate_agent_id(agent_id: object) -> str:
    if not isinstance(agent_id, str) or not _AGENT_ID.fullmatch(agent_id):
        raise InvalidRequest(
            f"invalid agent id {agent_id!r}: letters, digits and '_', '.', ':', '@', '-' only"
        )
    if len(agent_id) > limits.cluster_agent_id_length_max:
        raise InvalidRequest(
            f"agent id is {len(agent_id)} characters long, at most {limits.cluster_agent_id_length_max}"
        )
    return agent_id


def validate_address(address: object) -> str:
    """An advertised address: ``host:port`` (an IPv6 host in brackets)."""
    if not isinstance(address, str) or len(address) > limits.cluster_address_length_max:
        raise InvalidRequest(f"invalid agent address {address!r}: HOST:PORT")
    if not _ADDRESS.fullmatch(address) or not 0 < int(address.rsplit(":", 1)[1]) < 65536:
        raise InvalidRequest(f"invalid agent address {address!r}: HOST:PORT with a port in 1..65535")
    return address


def validate_cell(name: object) -> str:
    """A cell's name: ``_cell`` (the home cell) or ``_cell.<n>``, n in 1..cells_max - 1."""
    if not isinstance(name, str) or len(name) > 16 or not (match := _CELL.fullmatch(name)):
        raise InvalidRequest(f"invalid cell name {name!r}: {HOME_CELL!r} or '{HOME_CELL}.<n>'")
    if match.group(1) is not None and int(match.group(1)) >= limits.cluster_cells_max:
        raise InvalidRequest(
            f"no cell {name!r}: a cluster has at most {limits.cluster_cells_max} cells, "
            f"{HOME_CELL!r} to '{HOME_CELL}.{limits.cluster_cells_max - 1}'"
        )
    return name


def cell_index(cell: str) -> int:
    """0 for the home cell, n for ``_cell.<n>``: the cells' order."""
    validate_cell(cell)
    return 0 if cell == HOME_CELL else int(cell[len(HOME_CELL) + 1 :])


def schema_id_base(cell: str) -> int:
    """Where the schema ids ``cell``'s engine hands out start (schemas/ids.py, decision
    0034): 0 for the home cell, ``n * SPAN`` for ``_cell.<n>``."""
    return cell_index(cell) * SCHEMA_ID_SPAN


def cell_of_schema_id(schema_id: int, count: int) -> str | None:
    """The cell of a cluster of ``count`` cells that handed out ``schema_id``; None for
    an id no cell of it hands out."""
    index = schema_id // SCHEMA_ID_SPAN
    if schema_id <= 0 or index >= count:
        return None
    return cell_names(count)[index]


def cell_names(count: int) -> tuple[str, ...]:
    """The first ``count`` cells in order: ``("_cell", "_cell.1", ..., "_cell.<count-1>")``."""
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= limits.cluster_cells_max:
        raise InvalidRequest(f"a cluster has 1..{limits.cluster_cells_max} cells, not {count!r}")
    return (HOME_CELL, *(f"{HOME_CELL}.{index}" for index in range(1, count)))


def cell_store_prefix(cell: str) -> str:
    """Where ``cell`` lives under the cluster's store prefix: ``""`` for the home cell
    (the root, as a cluster of one cell always had it), ``cells/<n>/`` for the others."""
    index = cell_index(cell)
    return "" if index == 0 else f"cells/{index}/"


def cell_cache_directory(cell: str, cells: int) -> str:
    """Where an agent caches ``cell`` under its data directory: the directory itself in
    a cluster of one cell (as always), ``cells/<index>`` for every cell of a cluster of
    several, the home cell's included (no cell's cache lies inside another's)."""
    index = cell_index(cell)
    return "" if cells == 1 else f"cells/{index}"


@dataclasses.dataclass(frozen=True)
class Layout:
    """The keys of one cluster. Pure: builds and parses keys, never talks to etcd."""

    cluster: str = DEFAULT_CLUSTER

    def __post_init__(self) -> None:
        validate_cluster_name(self.cluster)

    @property
    def prefix(self) -> bytes:
        return f"{ROOT}{self.cluster}/".encode()

    @property
    def agents_prefix(self) -> bytes:
        return self.prefix + b"agents/"

    @property
    def owners_prefix(self) -> bytes:
        return self.prefix + b"owners/"

    @property
    def topics_prefix(self) -> bytes:
        return self.prefix + b"catalog/topics/"

    @property
    def placements_prefix(self) -> bytes:
        return self.prefix + b"catalog/cells/"

    @property
    def shapes_prefix(self) -> bytes:
        return self.prefix + b"catalog/shapes/"

    @property
    def security_prefix(self) -> bytes:
        return self.prefix + b"security/"

    @property
    def transactions_prefix(self) -> bytes:
        return self.prefix + b"transactions/"

    def enlistments_prefix(self, hashed: str) -> bytes:
        """The keys of one transactional id's enlistments (``hashed``: the SHA-256 of
        the id, 64 hex digits)."""
        if not _HASH.fullmatch(hashed):
            raise InvalidRequest(f"a transactional id's hash is 64 hex digits, got {hashed[:80]!r}")
        return self.transactions_prefix + hashed.encode() + b"/"

    def enlistment(self, hashed: str, cell: str) -> bytes:
        """The key of the transactional id's enlistment of ``cell`` (decision 0037)."""
        return _bounded(self.enlistments_prefix(hashed) + validate_cell(cell).encode())

    def of_enlistment(self, key: bytes) -> tuple[str, str]:
        """(id hash, cell) of an enlistment key (DataDamaged if it is no such key)."""
        hashed, _, cell = _suffix(key, self.transactions_prefix).partition("/")
        if not _HASH.fullmatch(hashed):
            raise DataDamaged(f"etcd key {key!r} names no transactional id's hash")
        try:
            return hashed, validate_cell(cell)
        except InvalidRequest as exc:
            raise DataDamaged(f"etcd key {key!r} names no cell: {exc.message}") from exc

    def security(self, document: str) -> bytes:
        """The key of security document ``document`` (``security/credentials.json``...)."""
        if not _SECURITY_DOCUMENT.fullmatch(document):
            raise InvalidRequest(f"no security document {document[:64]!r}: security/NAME.json")
        return _bounded(self.prefix + document.encode())

    def agent(self, agent_id: str) -> bytes:
        return _bounded(self.agents_prefix + validate_agent_id(agent_id).encode())

    def handover(self, topic: str) -> bytes:
        """Which agent ``topic``'s owner hands it over to (a short-lived key)."""
        return _bounded(self.prefix + b"handovers/" + _topic(topic).encode())

    def owner(self, topic: str) -> bytes:
        return _bounded(self.owners_prefix + validate_topic_name(topic, allow_reserved=True).encode())

    def topic(self, topic: str) -> bytes:
        return _bounded(self.topics_prefix + validate_topic_name(topic, allow_reserved=True).encode())

    def placement(self, topic: str) -> bytes:
        """The key saying which cell holds ``topic``."""
        return _bounded(self.placements_prefix + validate_topic_name(topic, allow_reserved=True).encode())

    def shape(self, topic: str) -> bytes:
        """The key saying how the Kafka door shows ``topic`` (its id and partitions)."""
        return _bounded(self.shapes_prefix + validate_topic_name(topic, allow_reserved=True).encode())

    def agent_of(self, key: bytes) -> str:
        """The agent id a key under ``agents/`` names (DataDamaged if it is no such key)."""
        return validate_agent_id(_suffix(key, self.agents_prefix))

    def topic_of_owner(self, key: bytes) -> str:
        return _topic(_suffix(key, self.owners_prefix))

    def topic_of_catalog(self, key: bytes) -> str:
        return _topic(_suffix(key, self.topics_prefix))

    def topic_of_placement(self, key: bytes) -> str:
        return _topic(_suffix(key, self.placements_prefix))

    def topic_of_shape(self, key: bytes) -> str:
        return _topic(_suffix(key, self.shapes_prefix))


def prefix_end(prefix: bytes) -> bytes:
    """The end of the etcd range of every key starting with ``prefix`` (the prefix with
    its last byte below 0xff incremented, as etcd's clients compute it)."""
    for index in range(len(prefix) - 1, -1, -1):
        if prefix[index] < 0xFF:
            return prefix[:index] + bytes([prefix[index] + 1])
    return b"\0"  # every key from the prefix on


def _bounded(key: bytes) -> bytes:
    if len(key) > limits.cluster_key_bytes_max:
        raise RequestTooLarge(f"etcd key of {len(key)} bytes, at most {limits.cluster_key_bytes_max}")
    return key


def _suffix(key: bytes, prefix: bytes) -> str:
    if not key.startswith(prefix) or len(key) == len(prefix):
        raise DataDamaged(f"etcd key {key!r} is not under {prefix!r}")
    try:
        return key[len(prefix) :].decode("ascii")
    except UnicodeDecodeError as exc:
        raise DataDamaged(f"etcd key {key!r} is not ASCII") from exc


def _topic(name: str) -> str:
    try:
        return validate_topic_name(name, allow_reserved=True)
    except InvalidRequest as exc:
        raise DataDamaged(f"etcd key names no topic: {exc.message}") from exc


# --- values ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class AgentRecord:
    """A live agent: where clients and other agents reach it, when it joined (its own
    wall clock, for people: nothing orders by it) and its lease."""

    agent_id: str
    address: str
    started_at: float
    lease: int = 0  # filled from the key's lease when read
    # Where its other doors listen ("kafka", "registry", "metrics": HOST:PORT, or absent
    # when off); the address above is its Flight door.
    doors: dict[str, str] = dataclasses.field(default_factory=dict)
    # Whether its doors serve TLS (its Flight door is then grpc+tls://ADDRESS).
    tls: bool = False
    # How many cells it was started with (decision 0032): every agent of a cluster alike.
    cells: int = 1
    # The SHA-256 (hex) of the secret of its own credentials, which other agents check
    # (security/agents.py, decision 0040); "" for an agent without them.
    token_hash: str = ""

    def __post_init__(self) -> None:
        validate_agent_id(self.agent_id)
        if not isinstance(self.token_hash, str) or (
            self.token_hash and not _HEX_64.fullmatch(self.token_hash)
        ):
            raise InvalidRequest(f"token_hash must be 64 hexadecimal digits, got {self.token_hash!r}")
        if not isinstance(self.tls, bool):
            raise InvalidRequest(f"tls must be true or false, got {self.tls!r}")
        cell_names(self.cells)  # 1..cluster_cells_max
        validate_address(self.address)
        if not _number(self.started_at):
            raise InvalidRequest(f"started_at must be a number, got {self.started_at!r}")
        if not isinstance(self.doors, dict) or len(self.doors) > len(DOORS):
            raise InvalidRequest(f"doors must map some of {DOORS} to addresses, got {self.doors!r}")
        for door, address in self.doors.items():
            if door not in DOORS:
                raise InvalidRequest(f"unknown door {door!r}: one of {DOORS}")
            validate_address(address)

    def encode(self) -> bytes:
        body: dict[str, Any] = {
            "v": FORMAT,
            "agent": self.agent_id,
            "address": self.address,
            "started_at": self.started_at,
        }
        if self.doors:
            body["doors"] = dict(self.doors)
        if self.tls:  # absent when false: records of agents without it read the same
            body["tls"] = True
        if self.cells != 1:  # likewise absent for one cell
            body["cells"] = self.cells
        if self.token_hash:  # likewise absent without credentials
            body["token"] = self.token_hash
        return _encode(body)

    @classmethod
    def decode(cls, data: bytes, lease: int = 0) -> AgentRecord:
        body = _decode(data, "agent", ("agent", "address", "started_at"))
        doors = body.get("doors") or {}
        tls = body.get("tls", False)
        cells = body.get("cells", 1)
        token_hash = body.get("token", "")
        return _build(
            lambda: cls(
                body["agent"], body["address"], body["started_at"], lease, doors, tls, cells, token_hash
            ),
            "agent",
        )


@dataclasses.dataclass(frozen=True)
class OwnerRecord:
    """Who owns a topic: the agent, its lease, and the epoch (the etcd revision at which
    the owner key was created; 0 while not yet written)."""

    topic: str
    agent_id: str
    lease: int
    epoch: int = 0

    def __post_init__(self) -> None:
        validate_topic_name(self.topic, allow_reserved=True)
        validate_agent_id(self.agent_id)
        for name in ("lease", "epoch"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidRequest(f"OwnerRecord.{name} must be an integer >= 0, got {value!r}")

    def encode(self) -> bytes:
        return _encode({"v": FORMAT, "agent": self.agent_id, "lease": self.lease})

    @classmethod
    def decode(cls, topic: str, data: bytes, epoch: int) -> OwnerRecord:
        body = _decode(data, "owner", ("agent", "lease"))
        return _build(lambda: cls(topic, body["agent"], body["lease"], epoch), "owner")


@dataclasses.dataclass(frozen=True)
class TopicRecord:
    """A topic in the catalog: its config (the same document the engine keeps per
    topic) and its incarnation (a deleted and re-created topic is a new incarnation, so
    that nothing of the old one is mistaken for the new one)."""

    name: str
    config: dict[str, Any]
    incarnation: int = 1

    def __post_init__(self) -> None:
        validate_topic_name(self.name, allow_reserved=True)
        if not isinstance(self.config, dict):
            raise InvalidRequest(f"a topic's config must be a JSON object, got {type(self.config).__name__}")
        value = self.incarnation
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidRequest(f"a topic's incarnation must be an integer >= 1, got {value!r}")

    def encode(self) -> bytes:
        return _encode({"v": FORMAT, "config": self.config, "incarnation": self.incarnation})

    @classmethod
    def decode(cls, name: str, data: bytes) -> TopicRecord:
        body = _decode(data, "topic", ("config", "incarnation"))
        return _build(lambda: cls(name, body["config"], body["incarnation"]), "topic")


@dataclasses.dataclass(frozen=True)
class PlacementRecord:
    """Which cell holds a topic. ``revision`` is the key's ``mod_revision`` when read
    from etcd (0 when built here): it orders what a view learns of one topic, and takes
    no part in equality."""

    topic: str
    cell: str
    revision: int = dataclasses.field(default=0, compare=False)

    def __post_init__(self) -> None:
        validate_topic_name(self.topic, allow_reserved=True)
        validate_cell(self.cell)
        value = self.revision
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidRequest(f"PlacementRecord.revision must be an integer >= 0, got {value!r}")

    def encode(self) -> bytes:
        """Canonical (sorted keys, no spaces): a compare on the value is a compare on the cell."""
        return _encode({"v": FORMAT, "cell": self.cell})

    @classmethod
    def decode(cls, topic: str, data: bytes, revision: int = 0) -> PlacementRecord:
        body = _decode(data, "placement", ("cell",))
        return _build(lambda: cls(topic, body["cell"], revision), "placement")


_INCARNATION = re.compile(r"[0-9a-f]{32}")


@dataclasses.dataclass(frozen=True)
class ShapeRecord:
    """How the Kafka door of the cell holding a topic shows it (decision 0033): the
    topic's incarnation (its Kafka topic id) and its partition count now. The agent
    serving the cell writes it; the Kafka doors of other cells read it to answer
    Metadata for the topic. ``revision`` as in PlacementRecord."""

    topic: str
    cell: str
    incarnation: str
    partitions: int
    revision: int = dataclasses.field(default=0, compare=False)

    def __post_init__(self) -> None:
        validate_topic_name(self.topic, allow_reserved=True)
        validate_cell(self.cell)
        if not isinstance(self.incarnation, str) or not _INCARNATION.fullmatch(self.incarnation):
            raise InvalidRequest(f"a topic's incarnation must be 32 hex digits, got {self.incarnation!r}")
        value = self.partitions
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1_000_000:
            raise InvalidRequest(f"a topic's partition count must be 1..1000000, got {value!r}")
        value = self.revision
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidRequest(f"ShapeRecord.revision must be an integer >= 0, got {value!r}")

    def encode(self) -> bytes:
        """Canonical: a compare on the value is a compare on the whole record."""
        body = {
            "v": FORMAT,
            "cell": self.cell,
            "incarnation": self.incarnation,
            "partitions": self.partitions,
        }
        return _encode(body)

    @classmethod
    def decode(cls, topic: str, data: bytes, revision: int = 0) -> ShapeRecord:
        body = _decode(data, "shape", ("cell", "incarnation", "partitions"))
        return _build(
            lambda: cls(topic, body["cell"], body["incarnation"], body["partitions"], revision), "shape"
        )


@dataclasses.dataclass(frozen=True)
class PlacementEvent:
    """A change of one topic's placement: ``cell`` is where it is now, None when its
    placement was deleted; ``revision`` the etcd revision of the change (or of the
    listing that showed it)."""

    topic: str
    cell: str | None
    revision: int

    @classmethod
    def of(cls, record: PlacementRecord) -> PlacementEvent:
        return cls(record.topic, record.cell, record.revision)


def _number(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and value == value  # not NaN


def _encode(body: dict[str, Any]) -> bytes:
    try:
        data = json.dumps(body, separators=(",", ":"), sort_keys=True, allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(f"value cannot be stored in etcd as JSON: {exc}") from exc
    if len(data) > limits.cluster_value_bytes_max:
        raise RequestTooLarge(f"etcd value of {len(data)} bytes, at most {limits.cluster_value_bytes_max}")
    return data


def _decode(data: bytes, what: str, fields: tuple[str, ...]) -> dict[str, Any]:
    if len(data) > limits.cluster_value_bytes_max:
        raise DataDamaged(
            f"{what} record in etcd of {len(data)} bytes, at most {limits.cluster_value_bytes_max}"
        )
    try:
        body = json.loads(data)
    except (UnicodeDecodeError, ValueError) as exc:
        raise DataDamaged(f"{what} record in etcd is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise DataDamaged(f"{what} record in etcd is not a JSON object")
    if body.get("v") != FORMAT:
        raise DataDamaged(f"{what} record in etcd has format {body.get('v')!r}, this agent reads {FORMAT}")
    missing = [name for name in fields if name not in body]
    if missing:
        raise DataDamaged(f"{what} record in etcd lacks {', '.join(missing)}")
    return body


def _build(make: Callable[[], T], what: str) -> T:
    try:
        return make()
    except InvalidRequest as exc:
        raise DataDamaged(f"{what} record in etcd is invalid: {exc.message}") from exc
