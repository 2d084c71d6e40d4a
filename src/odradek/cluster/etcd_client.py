"""How an agent reaches a secured etcd: TLS (``https://`` endpoints, optionally with a
client certificate for etcd's ``--client-cert-auth``) and a user and password.

aetcd (1.0.0, pinned) opens only plaintext channels, and with a user and password it
authenticates once and sends that token forever. etcd's tokens expire: a *simple* token
(etcd's default) after ``--auth-token-ttl`` seconds without use (default 300), a JWT a
fixed time after it was issued, and every token of a member that restarts. Rules:

* **TLS.** ``EtcdClient.connect`` is aetcd's, with ``grpc.aio.secure_channel`` and the
  CA, certificate and key read once at start (``load_security``, which checks them with
  the ``ssl`` module: a clear error for a file that is not PEM, or a key that does not
  match its certificate, before anything is dialled).
* **The token rides on every call.** Channel interceptors put the current token on each
  call's metadata, so the calls made on aetcd's stubs directly (bounded listings,
  ``cluster status``) carry it as well as aetcd's own.
* **An expired token is renewed once.** A unary call that etcd refuses with ``invalid
  auth token`` (what 3.4 answers for an expired or unknown token), ``revision of auth
  store is old`` or ``user name is empty`` is retried once after one new Authenticate;
  callers refused at once share that one Authenticate. (etcd refuses such a call before
  applying it, so the retry cannot apply it twice.)
* **A refused watch is an error, not a silent one.** etcd 3.4 answers a watch created
  with an expired token with ``created`` *and* ``canceled`` on the same stream (reason
  ``invalid auth token``); aetcd takes that for a live watch that then never fires. Here
  it is refused: after an auth refusal the client renews its token, opens a new watch
  stream (the token of a stream is fixed when it opens; watches of the old stream end,
  their callers watch again from their revision) and creates the watch once more.
* **Configuration errors are not retried.** A wrong password, a server certificate that
  does not verify, a client certificate etcd refuses or requires, a request the user's
  role does not permit, an etcd that requires a user when none was given: each raises
  ``EtcdRefused`` (an ``InvalidRequest``) at once with what to change, where a retry loop
  would only hide it. Lease keep-alives are not checked by etcd 3.4 and need no token.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import ssl
from collections.abc import Sequence
from typing import Any

import aetcd
import aetcd.client
import aetcd.rpc
import aetcd.watcher
import grpc
import grpc.aio

from odradek import limits
from odradek.errors import InvalidRequest
from odradek.protocols.tls import load_key_pair, read_pem_file

log = logging.getLogger(__name__)

_AUTHENTICATE = "/etcdserverpb.Auth/Authenticate"
_TOKEN = "token"  # the metadata key etcd reads the token from
# etcd's answers after which a new token may succeed (clientv3's shouldRefreshToken).
_TOKEN_REFUSALS = (
    "etcdserver: invalid auth token",
    "etcdserver: revision of auth store is old",
    "etcdserver: user name is empty",
)
_AUTH_FAILED = "etcdserver: authentication failed"
_AUTH_NOT_ENABLED = "etcdserver: authentication is not enabled"
_USER_EMPTY = "etcdserver: user name is empty"
_TLS_FILES_WITHOUT_TLS = (
    "--etcd-ca/--etcd-cert/--etcd-key are for TLS, but the etcd endpoints are http://: write them "
    "https://HOST:PORT (or drop the TLS files for a plaintext etcd)"
)


class EtcdRefused(InvalidRequest):
    """etcd refused this client for a reason a retry cannot fix: a wrong user or
    password, a certificate that does not verify or that etcd does not accept, or a
    request the user's role does not permit. Change the settings named in the message."""


@dataclasses.dataclass(frozen=True)
class EtcdSecurity:
    """TLS files (PEM, read once) and credentials for etcd. With ``https://`` endpoints
    and no ``ca``, the server is verified against the system's CA certificates."""

    ca: bytes | None = None
    cert: bytes | None = None
    key: bytes | None = dataclasses.field(default=None, repr=False)
    user: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)
    ca_file: str | None = None  # where ca and cert came from, for messages
    cert_file: str | None = None

    @property
    def tls_files(self) -> bool:
        return self.ca is not None or self.cert is not None

    def check(self, tls: bool) -> None:
        """Refuse TLS files for plaintext (``http://``) endpoints."""
        if not tls and self.tls_files:
            raise InvalidRequest(_TLS_FILES_WITHOUT_TLS)

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca, private_key=self.key, certificate_chain=self.cert
        )


def check_security_settings(
    tls: bool,
    *,
    ca: str | None = None,
    cert: str | None = None,
    key: str | None = None,
    user: str | None = None,
    password_given: bool = False,
) -> None:
    """Refuse settings that cannot work together (no file is read here)."""
    if (cert is None) != (key is None):
        given, missing = ("--etcd-cert", "--etcd-key") if key is None else ("--etcd-key", "--etcd-cert")
        raise InvalidRequest(f"{given} needs {missing}: a client certificate and its key go together")
    if not tls and (ca is not None or cert is not None):
        raise InvalidRequest(_TLS_FILES_WITHOUT_TLS)
    if user is not None and not password_given:
        raise InvalidRequest(
            f"--etcd-user {user} needs a password: set ODRADEK_ETCD_PASSWORD or give "
            "--etcd-password-file FILE"
        )
    if user is None and password_given:
        raise InvalidRequest("an etcd password was given without a user: give --etcd-user NAME too")
    if user is not None and (not user or user != user.strip()):
        raise InvalidRequest(f"--etcd-user must be a user name, got {user!r}")


def load_security(
    tls: bool,
    *,
    ca: str | None = None,
    cert: str | None = None,
    key: str | None = None,
    user: str | None = None,
    password: str | None = None,
    password_file: str | None = None,
) -> EtcdSecurity | None:
    """Read and check the TLS files and the password; None when nothing is set (a
    plaintext etcd without authentication). Raises InvalidRequest saying what is wrong."""
    if password is not None and password_file is not None:
        raise InvalidRequest(
            "the etcd password is given twice (ODRADEK_ETCD_PASSWORD and --etcd-password-file): keep one"
        )
    check_security_settings(
        tls,
        ca=ca,
        cert=cert,
        key=key,
        user=user,
        password_given=password is not None or password_file is not None,
    )
    if password_file is not None:
        password = _read_password(password_file)
    if password is not None and not password:
        raise InvalidRequest("the etcd password is empty")
    if not tls and user is None:
        return None
    ca_pem = _read_file(ca, "--etcd-ca") if ca is not None else None
    cert_pem = _read_file(cert, "--etcd-cert") if cert is not None else None
    key_pem = _read_file(key, "--etcd-key") if key is not None else None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if ca_pem is not None:
        try:
            context.load_verify_locations(cadata=ca_pem.decode("ascii", errors="replace"))
        except (ssl.SSLError, ValueError) as exc:
            raise InvalidRequest(f"--etcd-ca {ca}: no PEM certificate in it ({exc})") from exc
    if cert is not None and key is not None:
        _check_pair(context, cert, key)
    return EtcdSecurity(ca_pem, cert_pem, key_pem, user, password, ca_file=ca, cert_file=cert)


def _read_file(path: str, flag: str, size_max: int = limits.etcd_tls_file_bytes_max) -> bytes:
    return read_pem_file(path, flag, size_max)


def _read_password(path: str) -> str:
    data = _read_file(path, "--etcd-password-file", limits.etcd_password_file_bytes_max)
    try:
        text = data.decode()
    except UnicodeDecodeError as exc:
        raise InvalidRequest(f"--etcd-password-file {path}: not UTF-8 text") from exc
    return text.removesuffix("\n").removesuffix("\r")  # the file's one line


def _check_pair(context: ssl.SSLContext, cert: str, key: str) -> None:
    load_key_pair(context, cert, key, cert_flag="--etcd-cert", key_flag="--etcd-key", user="gRPC")


# --- the client ----------------------------------------------------------------------


class _Session:
    """What the interceptors of one client's channel share: the security settings, the
    endpoint (for messages) and the current token."""

    def __init__(self, security: EtcdSecurity, tls: bool, endpoint: str, timeout: float | None) -> None:
        self.security = security
        self.tls = tls
        self.endpoint = endpoint
        self.timeout = timeout
        self.token: str | None = None
        self.renewals = 0  # Authenticates after the first (tests, logs)
        self._stub: Any = None
        self._lock = asyncio.Lock()

    async def authenticate(self, stub: Any) -> None:
        """The first Authenticate, on a new channel (nothing to do without a user)."""
        self._stub = stub
        if self.security.user is not None:
            await self._authenticate()

    async def renew(self, stale: str | None) -> None:
        """A new token, unless another call replaced ``stale`` already."""
        async with self._lock:
            if self.token == stale:
                await self._authenticate()
                self.renewals += 1
                log.debug("etcd %s: token renewed for user %s", self.endpoint, self.security.user)

    async def _authenticate(self) -> None:
        request = aetcd.rpc.AuthenticateRequest(name=self.security.user, password=self.security.password)
        try:
            answer = await self._stub.Authenticate(request, timeout=self.timeout)
        except grpc.aio.AioRpcError as exc:
            details = exc.details() or ""
            if _AUTH_NOT_ENABLED in details:  # as etcd's own client: go on without a token
                log.info("etcd %s: authentication is not enabled; going on without a token", self.endpoint)
                self.token = None
                return
            if _AUTH_FAILED in details:
                raise EtcdRefused(
                    f"etcd at {self.endpoint} refused user {self.security.user!r}: wrong user name or "
                    f"password ({details}); check --etcd-user and ODRADEK_ETCD_PASSWORD or "
                    "--etcd-password-file"
                ) from exc
            refusal = self.refusal(exc)
            if refusal is not None:
                raise refusal from exc
            raise
        self.token = str(answer.token)

    def token_refused(self, details: str) -> bool:
        return self.security.user is not None and any(text in details for text in _TOKEN_REFUSALS)

    def refusal(self, exc: grpc.aio.AioRpcError, what: str = "") -> EtcdRefused | None:
        """``exc`` as the configuration error it shows, or None if it may be transient."""
        code, details = exc.code(), exc.details() or ""
        where = f"etcd at {self.endpoint}"
        if code == grpc.StatusCode.UNAVAILABLE and "CERTIFICATE_VERIFY_FAILED" in details:
            against = f"--etcd-ca {self.security.ca_file}" if self.security.ca_file else "the system's CAs"
            return EtcdRefused(
                f"{where}: its TLS certificate does not verify against {against} "
                f"(is --etcd-ca the CA that signed etcd's --cert-file?): {details}"
            )
        if code == grpc.StatusCode.UNAVAILABLE and "Hostname Verification Check failed" in details:
            return EtcdRefused(f"{where}: its TLS certificate does not name this host: {details}")
        if code == grpc.StatusCode.UNAVAILABLE and "TSI_DATA_CORRUPTED" in details and self.tls:
            if self.security.cert is None:
                return EtcdRefused(
                    f"{where} closed the TLS connection: it asks for a client certificate "
                    f"(etcd --client-cert-auth): give --etcd-cert and --etcd-key ({details})"
                )
            return EtcdRefused(
                f"{where} refused the client certificate --etcd-cert {self.security.cert_file}: it must "
                f"be signed by a CA etcd trusts (its --trusted-ca-file) ({details})"
            )
        if code == grpc.StatusCode.PERMISSION_DENIED:
            return EtcdRefused(
                f"{where} refused {what or 'a request'} to user {self.security.user!r}: {details} (grant "
                "its role readwrite on the cluster's keys, /odradek/CLUSTER/; docs/cluster.md)"
            )
        if _USER_EMPTY in details and self.security.user is None:
            return EtcdRefused(
                f"{where} requires authentication: give --etcd-user NAME and its password "
                "(ODRADEK_ETCD_PASSWORD or --etcd-password-file)"
            )
        return None


def _with_token(details: grpc.aio.ClientCallDetails, token: str | None) -> grpc.aio.ClientCallDetails:
    pairs = [(key, value) for key, value in (details.metadata or ()) if key != _TOKEN]
    if token is not None:
        pairs.append((_TOKEN, token))
    return grpc.aio.ClientCallDetails(
        details.method,
        details.timeout,
        grpc.aio.Metadata(*pairs),
        details.credentials,
        details.wait_for_ready,
    )


def _method(details: grpc.aio.ClientCallDetails) -> str:
    method = details.method
    return method.decode() if isinstance(method, bytes) else str(method)


class _UnaryUnary(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """The token on each call; one renewal and retry when etcd refuses it; configuration
    errors as EtcdRefused."""

    def __init__(self, session: _Session) -> None:
        self.session = session

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        session = self.session
        if _method(details) == _AUTHENTICATE:
            return await continuation(details, request)
        for attempt in range(1 + limits.etcd_token_renewals_per_request_max):
            token = session.token
            call = await continuation(_with_token(details, token), request)
            try:
                return await call
            except grpc.aio.AioRpcError as exc:
                if attempt < limits.etcd_token_renewals_per_request_max and session.token_refused(
                    exc.details() or ""
                ):
                    await session.renew(token)
                    continue
                refusal = session.refusal(exc, _method(details).rpartition("/")[2])
                if refusal is not None:
                    raise refusal from exc
                raise
        raise AssertionError("unreachable")  # the loop returns or raises


class _StreamStream(grpc.aio.StreamStreamClientInterceptor):  # type: ignore[misc]
    """The current token on a stream (watch, lease keep-alive) that carries none yet."""

    def __init__(self, session: _Session) -> None:
        self.session = session

    async def intercept_stream_stream(self, continuation: Any, details: Any, request_iterator: Any) -> Any:
        if any(key == _TOKEN for key, _ in (details.metadata or ())):
            return await continuation(details, request_iterator)
        return await continuation(_with_token(details, self.session.token), request_iterator)


class _WatchRefused(Exception):
    """etcd answered a watch's creation with its cancellation."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Watcher(aetcd.watcher.Watcher):  # type: ignore[misc]  # aetcd is untyped
    """aetcd's watcher, with a refused creation raised instead of taken for a watch, and
    the token its stream opened with (``metadata``) remembered."""

    def __init__(self, stub: Any, timeout: float | None, token: str | None) -> None:
        super().__init__(stub, timeout=timeout, metadata=None if token is None else ((_TOKEN, token),))
        self.token = token

    async def _handle_response(self, response: Any) -> None:
        if response.created and response.canceled:
            async with self._lock:
                pending = self._new_callback
                if pending is not None:
                    pending.error = _WatchRefused(str(response.cancel_reason))
                    self._new_callback_ready.notify_all()
            return
        await super()._handle_response(response)


class EtcdClient(aetcd.Client):  # type: ignore[misc]  # aetcd is untyped
    """``aetcd.Client`` over TLS and with a token renewed on expiry (module docstring)."""

    # aetcd's attributes this class uses (aetcd is untyped).
    _connected: asyncio.Event
    _is_connecting: bool
    _connect_wait_timeout: float
    _options: dict[str, Any]
    _timeout: float | None
    _watcher: Any
    channel: Any

    def __init__(
        self,
        host: str,
        port: int,
        *,
        tls: bool = False,
        security: EtcdSecurity | None = None,
        timeout: float | None = None,
        options: dict[str, Any] | None = None,
    ) -> None:
        # No user and password for aetcd: it would authenticate once and never again.
        super().__init__(host=host, port=port, timeout=timeout, options=options)
        self.tls = tls
        self._security = security or EtcdSecurity()
        target_host = f"[{host}]" if ":" in host else host
        self._target = f"{target_host}:{port}"
        self._session = _Session(
            self._security, tls, f"{'https' if tls else 'http'}://{self._target}", timeout
        )

    @property
    def token_renewals(self) -> int:
        """How often the token was renewed after the first Authenticate."""
        return self._session.renewals

    @property
    def token(self) -> str | None:
        return self._session.token

    # Follows aetcd 1.0.0's Client.connect (aetcd/client.py) line by line, except that the
    # channel may be a TLS one, carries the interceptors, and is closed again if the first
    # Authenticate fails (aetcd leaves it open and opens another on the next call).
    @aetcd.client._handle_errors  # type: ignore[untyped-decorator]
    async def connect(self) -> None:
        if self._connected.is_set():
            return
        if self._is_connecting:  # another task is connecting: wait for it
            await asyncio.wait_for(self._connected.wait(), self._connect_wait_timeout)
            return
        try:
            self._is_connecting = True
            interceptors: Sequence[grpc.aio.ClientInterceptor] = (
                _UnaryUnary(self._session),
                _StreamStream(self._session),
            )
            options = list(self._options.items())
            if self.tls:
                self.channel = grpc.aio.secure_channel(
                    self._target, self._security.credentials(), options=options, interceptors=interceptors
                )
            else:
                self.channel = grpc.aio.insecure_channel(
                    self._target, options=options, interceptors=interceptors
                )
            try:
                await self._session.authenticate(aetcd.rpc.AuthStub(self.channel))
            except BaseException:
                channel, self.channel = self.channel, None
                await channel.close()
                raise
            self.auth_stub = aetcd.rpc.AuthStub(self.channel)
            self.kvstub = aetcd.rpc.KVStub(self.channel)
            self.clusterstub = aetcd.rpc.ClusterStub(self.channel)
            self.leasestub = aetcd.rpc.LeaseStub(self.channel)
            self.maintenancestub = aetcd.rpc.MaintenanceStub(self.channel)
            self._watcher = _Watcher(aetcd.rpc.WatchStub(self.channel), self._timeout, self._session.token)
            self._connected.set()
        finally:
            self._is_connecting = False

    async def watch(self, key: bytes, **options: Any) -> Any:
        """aetcd's ``watch``; a creation refused for the token is tried once more on a new
        stream with a new token; any other refusal raises EtcdRefused."""
        await self.connect()
        watcher = self._watcher
        try:
            return await super().watch(key, **options)
        except _WatchRefused as exc:
            if not self._session.token_refused(exc.reason):
                raise self._watch_refused(key, exc.reason) from None
        if self._watcher is watcher:  # (else another watch renewed the stream already)
            await self._session.renew(watcher.token)
            self._watcher = _Watcher(aetcd.rpc.WatchStub(self.channel), self._timeout, self._session.token)
            await watcher.shutdown()  # its watches end; their callers watch again
        try:
            return await super().watch(key, **options)
        except _WatchRefused as exc:
            raise self._watch_refused(key, exc.reason) from None

    def _watch_refused(self, key: bytes, reason: str) -> EtcdRefused:
        user = f" to user {self._security.user!r}" if self._security.user else ""
        return EtcdRefused(
            f"etcd at {self._session.endpoint} refused a watch of {key.decode(errors='replace')}{user}: "
            f"{reason} (grant the user's role read on the cluster's keys, /odradek/CLUSTER/)"
        )
