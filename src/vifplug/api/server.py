"""The listeners: sockets bound by vifplug, served by uvicorn.

Why not let uvicorn bind them: ``uds=`` creates the unix socket world-writable
(0666) and anyone on the host could plug VIFs.  We bind it ourselves under a
temporary name, set mode 0660 and the configured group *before* ``listen()``
(nobody can connect to a socket that is not listening) and rename it into
place, so there is no moment when the socket exists with looser permissions.

Why two uvicorn servers: one ``Server`` applies one TLS setting to all its
sockets; the unix socket is plain, the TCP listener is TLS.  Both run in the
daemon's event loop, and neither installs signal handlers: ``vifplug.daemon``
owns SIGTERM and SIGHUP, and stops the servers itself.

Each listener accepts through ``connections.Acceptor`` rather than an
``asyncio.Server``: that is where connections are counted and bounded and
where TLS handshakes get a timeout (see ``connections`` for why uvicorn alone
cannot).

The TCP listener is for the network manager and refuses to start without
TLS (``cert_file``, ``key_file``) and a bearer token (``token_file``) unless
``[api] insecure`` says so explicitly.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import grp
import logging
import math
import os
import resource
import socket
import ssl
import stat
from collections.abc import Callable, Generator
from typing import cast

import uvicorn
from starlette.types import ASGIApp

from vifplug import conf
from vifplug.api import connections

LOG = logging.getLogger(__name__)

SOCKET_MODE = 0o660
BACKLOG = 1024
#: Descriptors kept for everything but API connections: one netlink socket
#: per API worker thread ([api] workers, 256 by default), OVSDB, SQLite, logs.
FD_RESERVE = 1024


class ListenerError(Exception):
    """A listener cannot be set up as configured; the message says what to fix."""


@dataclasses.dataclass(frozen=True)
class TcpPlan:
    """What the TCP listener will be, once its settings passed the checks."""

    host: str
    port: int
    tls: bool
    token: str | None
    cert_file: str | None = None
    key_file: str | None = None
    ca_file: str | None = None


# --- checking the configuration -----------------------------------------------------


def parse_listen(listen: str) -> tuple[str, int]:
    """``host:port`` or ``[v6addr]:port`` -> (host, port)."""
    text = listen.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ListenerError(f"[api] listen {listen!r} is not [ADDRESS]:PORT")
        port_text = rest[1:]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise ListenerError(f"[api] listen {listen!r} is not HOST:PORT")
    try:
        port = int(port_text)
    except ValueError:
        raise ListenerError(f"[api] listen {listen!r}: {port_text!r} is not a port") from None
    if not 0 <= port <= 65535:
        raise ListenerError(f"[api] listen {listen!r}: port out of range")
    return host or "0.0.0.0", port


def read_token(path: str) -> str:
    """The bearer token in ``path`` (surrounding whitespace ignored)."""
    try:
        with open(path, encoding="utf-8") as f:
            token = f.read().strip()
    except OSError as exc:
        raise ListenerError(f"cannot read token_file {path}: {exc.strerror}") from None
    if not token:
        raise ListenerError(f"token_file {path} is empty")
    if any(c.isspace() for c in token):
        raise ListenerError(f"token_file {path} holds whitespace inside the token")
    if os.stat(path).st_mode & stat.S_IROTH:
        LOG.warning("token_file %s is readable by everyone on this host", path)
    return token


def _readable(option: str, path: str | None) -> str | None:
    if path is None:
        return None
    if not os.access(path, os.R_OK):
        raise ListenerError(f"[api] {option} {path} does not exist or is not readable")
    return path


def plan_tcp(api: conf.ApiSettings) -> TcpPlan | None:
    """Check the TCP listener's settings; ``None`` when there is no listener.

    Raises ``ListenerError`` when TLS or the token is missing and
    ``insecure`` is not set, or when a file cannot be read.
    """
    if not api.listen:
        return None
    host, port = parse_listen(api.listen)
    cert = _readable("cert_file", api.cert_file)
    key = _readable("key_file", api.key_file)
    ca = _readable("ca_file", api.ca_file)
    if (cert is None) != (key is None):
        raise ListenerError("[api] cert_file and key_file go together; one is missing")
    missing = [
        name
        for name, value in (("cert_file", cert), ("key_file", key), ("token_file", api.token_file))
        if value is None
    ]
    if missing and not api.insecure:
        raise ListenerError(
            f"the TCP listener {api.listen} needs TLS and a bearer token, but "
            f"[api] {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set; "
            "set them, or set [api] insecure = true to run it without (tests only)"
        )
    if ca is not None and cert is None:
        raise ListenerError("[api] ca_file (client certificates) needs cert_file and key_file")
    token = read_token(api.token_file) if api.token_file else None
    if missing:
        LOG.warning(
            "the TCP listener %s runs WITHOUT %s because [api] insecure = true",
            api.listen,
            " and ".join(missing),
        )
    return TcpPlan(
        host=host,
        port=port,
        tls=cert is not None,
        token=token,
        cert_file=cert,
        key_file=key,
        ca_file=ca,
    )


def limits(api: conf.ApiSettings) -> connections.Limits:
    """The connection limits ``[api]`` sets, the same for every listener."""
    return connections.Limits(
        idle_timeout=api.idle_timeout,
        request_timeout=api.request_timeout,
        tls_handshake_timeout=api.tls_handshake_timeout,
        max_connections=api.max_connections,
    )


# --- binding ---------------------------------------------------------------------------


def _gid(group: str) -> int:
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        if group.isdigit():
            return int(group)
        raise ListenerError(f"[api] socket_group {group!r} is not a group on this host") from None


def _remove_stale(path: str) -> None:
    """Remove a socket left by a daemon that died; refuse to steal a live one."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise ListenerError(f"{path} exists and is not a socket; not removing it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(path)
    except OSError:
        os.unlink(path)  # nobody listens: stale
        return
    finally:
        probe.close()
    raise ListenerError(f"another process is serving {path}; is vifplugd already running?")


def bind_unix(path: str, *, group: str | None) -> socket.socket:
    """A listening unix socket at ``path``, mode 0660, group ``group``."""
    gid = _gid(group) if group else -1
    parent = os.path.dirname(path) or "."
    os.makedirs(parent, mode=0o755, exist_ok=True)
    _remove_stale(path)
    tmp = f"{path}.new"
    if len(os.fsencode(tmp)) > 107:
        raise ListenerError(f"[api] socket_path {path} is too long for a unix socket")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(tmp)
        os.chmod(tmp, SOCKET_MODE)
        if gid != -1:
            os.chown(tmp, -1, gid)
        os.rename(tmp, path)
        sock.listen(BACKLOG)
    except BaseException:
        sock.close()
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    sock.setblocking(False)
    return sock


def bind_tcp(plan: TcpPlan, *, option: str = "[api] listen") -> socket.socket:
    """A listening TCP socket for ``plan`` (port 0 picks a free port);
    ``option`` names the setting in error messages."""
    try:
        infos = socket.getaddrinfo(
            plan.host, plan.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise ListenerError(f"{option}: cannot resolve {plan.host}: {exc}") from None
    family, socktype, proto, _, address = infos[0]
    sock = socket.socket(family, socktype, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        raise ListenerError(
            f"{option}: cannot listen on {plan.host}:{plan.port}: {exc.strerror}"
        ) from None
    sock.setblocking(False)
    return sock


def adopt(sock: socket.socket, *, name: str, family: int) -> socket.socket:
    """A socket systemd passed (``FileDescriptorName=name``), checked: a
    listening stream socket of ``family`` (AF_UNIX for the API socket, an
    inet family for the others).  systemd bound it and set its mode and
    group (``SocketMode=``, ``SocketGroup=``); vifplug never unlinks it."""
    families = (family,) if family == socket.AF_UNIX else (socket.AF_INET, socket.AF_INET6)
    listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
    if sock.family not in families or sock.type != socket.SOCK_STREAM or not listening:
        raise ListenerError(
            f"the socket systemd passed as {name!r} is not a listening "
            f"{'unix' if family == socket.AF_UNIX else 'TCP'} stream socket "
            "(ListenStream= in vifplugd.socket)"
        )
    sock.setblocking(False)
    return sock


def tcp_address(sock: socket.socket, *, tls: bool) -> str:
    """``https://host:port`` (or http) of a listening TCP socket, for the log."""
    host, port = sock.getsockname()[:2]
    scheme = "https" if tls else "http"
    return f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}"


def unlink_unix(path: str, inode: int) -> None:
    """Remove our socket file on exit, unless someone replaced it meanwhile
    (``inode``: ``os.stat(path).st_ino`` right after ``bind_unix``)."""
    with contextlib.suppress(OSError):
        if os.lstat(path).st_ino == inode:
            os.unlink(path)


# --- serving ---------------------------------------------------------------------------


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signals to the daemon and accepts through
    ``connections.Acceptor`` (bounded, with timeouts) instead of an
    ``asyncio.Server``."""

    def __init__(self, config: uvicorn.Config, *, name: str, limits: connections.Limits) -> None:
        super().__init__(config)
        self.limits = limits
        self.flood = connections.FloodLog(f"{name} listener")

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    def install_signal_handlers(self) -> None:
        """uvicorn before 0.29 installed its handlers here."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's ``startup`` for given sockets (lifespan is off), with our acceptor."""
        assert sockets is not None, "vifplug binds its sockets itself"
        config = self.config

        def protocol(on_close: Callable[[], None]) -> asyncio.Protocol:
            return connections.Protocol(
                config,
                self.server_state,
                self.lifespan.state,
                limits=self.limits,
                flood=self.flood,
                on_close=on_close,
            )

        acceptors = [
            connections.Acceptor(
                sock, protocol, ssl_context=config.ssl, limits=self.limits, flood=self.flood
            )
            for sock in sockets
        ]
        # uvicorn's shutdown only calls close() and wait_closed() on these.
        self.servers = cast(list[asyncio.base_events.Server], acceptors)
        self.started = True


class _QuietInvalidRequest(logging.Filter):
    """Drop uvicorn's "Invalid HTTP request received." warning: one per bad
    request is a flood; ``connections.Protocol`` counts them instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg != "Invalid HTTP request received."


_QUIET = _QuietInvalidRequest()


def reserve_descriptors(connections_total: int) -> None:
    """Raise the soft descriptor limit so that the listeners' connections
    cannot exhaust it (up to the hard limit; a warning when even that is short)."""
    needed = connections_total + FD_RESERVE
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    if soft != resource.RLIM_INFINITY and soft < needed:
        LOG.warning(
            "the descriptor limit (%d) is below the %d the listeners' [api] max_connections "
            "need with a reserve of %d; raise LimitNOFILE or lower max_connections",
            soft,
            needed,
            FD_RESERVE,
        )


@dataclasses.dataclass
class Listener:
    name: str
    server: _Server
    sock: socket.socket
    address: str


def make_listener(
    name: str,
    app: ASGIApp,
    sock: socket.socket,
    *,
    address: str,
    shutdown_timeout: float,
    limits: connections.Limits | None = None,
    plan: TcpPlan | None = None,
) -> Listener:
    """A uvicorn server for ``app`` on ``sock``; TLS when ``plan`` says so.

    The configuration is loaded here, so a bad certificate or key fails
    start-up (before READY=1) instead of the first connection.
    """
    tls = plan if plan is not None and plan.tls else None
    if _QUIET not in logging.getLogger("uvicorn.error").filters:
        logging.getLogger("uvicorn.error").addFilter(_QUIET)
    config = uvicorn.Config(
        app,
        http="h11",
        ws="none",
        lifespan="off",
        log_config=None,
        access_log=False,
        server_header=False,
        # No proxy is in front of the daemon: X-Forwarded-For from a local
        # client would only rewrite its address (and cost a middleware).
        proxy_headers=False,
        backlog=BACKLOG,
        timeout_graceful_shutdown=math.ceil(shutdown_timeout),
        # Without TLS these are uvicorn's defaults: a plain socket.
        ssl_certfile=tls.cert_file if tls else None,
        ssl_keyfile=tls.key_file if tls else None,
        ssl_ca_certs=tls.ca_file if tls else None,
        ssl_cert_reqs=ssl.CERT_REQUIRED if tls and tls.ca_file is not None else ssl.CERT_NONE,
    )
    try:
        config.load()
    except (ssl.SSLError, OSError) as exc:
        raise ListenerError(f"the {name} listener's TLS setup failed: {exc}") from None
    server = _Server(config, name=name, limits=limits or connections.Limits())
    return Listener(name=name, server=server, sock=sock, address=address)


class Servers:
    """Every listener of the daemon, served together in one event loop."""

    def __init__(self, listeners: list[Listener]) -> None:
        self.listeners = listeners
        reserve_descriptors(sum(lst.server.limits.max_connections for lst in listeners))

    async def serve(self) -> None:
        """Serve until ``stop()``; returns once every in-flight request has
        been answered (or ``shutdown_timeout`` passed)."""
        await asyncio.gather(*(lst.server.serve(sockets=[lst.sock]) for lst in self.listeners))

    @property
    def started(self) -> bool:
        return all(lst.server.started for lst in self.listeners)

    def stop(self) -> None:
        """Stop accepting; in-flight requests are finished by ``serve``."""
        for lst in self.listeners:
            lst.server.should_exit = True
