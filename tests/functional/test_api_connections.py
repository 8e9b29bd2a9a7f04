"""Hostile and careless clients: silent, slow and too many connections.

Against the real daemon: connections that never send a TLS ClientHello, or
nothing at all, are closed within the configured timeouts and a new client
is served; a request sent one byte at a time is cut off with a 408; a
connection over ``[api] max_connections`` is closed at once rather than
left hanging; and each flood is logged in a line or two with a count.

Every wait is for a condition with a generous deadline; the timeouts are
short so that the deadlines stay far from them.
"""

from __future__ import annotations

import contextlib
import json
import re
import select
import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest
from daemon_fixture import Daemon, DaemonFactory
from engine_fixture import instance, ovs_vif, vif_id_of
from test_api_tcp import TOKEN, Pki, pki  # noqa: F401  (pki is a fixture)

from helpers import unique

IDLE = 2.0
REQUEST = 3.0
HANDSHAKE = 2.0
DEADLINE = 45.0

LIMITS = {"idle_timeout": IDLE, "request_timeout": REQUEST, "tls_handshake_timeout": HANDSHAKE}


_RECEIVED: dict[int, bytes] = {}


def _closed_by_peer(sock: socket.socket) -> bytes | None:
    """What the server sent before closing, or None while it is still open.
    What arrives before the close is kept across calls (per socket): the
    answer and the close may come in two reads."""
    data = _RECEIVED.pop(sock.fileno(), b"")
    while True:
        try:
            chunk = sock.recv(65536)
        except BlockingIOError:
            _RECEIVED[sock.fileno()] = data
            return None
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def _wait_all_closed(socks: list[socket.socket], deadline: float) -> list[bytes]:
    """Until the server has closed every socket; what each got before."""
    got: dict[int, bytes] = {}
    end = time.monotonic() + deadline
    while len(got) < len(socks):
        assert time.monotonic() < end, f"{len(socks) - len(got)} connections still open"
        open_ = [s for i, s in enumerate(socks) if i not in got]
        readable, _, _ = select.select(open_, [], [], 0.5)
        for s in readable:
            answer = _closed_by_peer(s)
            if answer is not None:
                got[socks.index(s)] = answer
    return [got[i] for i in range(len(socks))]


@contextlib.contextmanager
def _sockets(n: int, family: int, address: str | tuple[str, int]) -> Iterator[list[socket.socket]]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(family, socket.SOCK_STREAM)
            s.connect(address)
            s.setblocking(False)
            socks.append(s)
        yield socks
    finally:
        for s in socks:
            s.close()


def _tls_daemon(daemon_factory: DaemonFactory, pki: Pki, **api: object) -> Daemon:  # noqa: F811
    return daemon_factory(
        {
            "api": {
                "listen": "127.0.0.1:0",
                "cert_file": str(pki.cert),
                "key_file": str(pki.key),
                "token_file": str(pki.token_file),
                **LIMITS,
                **api,
            }
        }
    )


def _tls_client(d: Daemon, pki: Pki) -> httpx.Client:  # noqa: F811
    return httpx.Client(
        base_url=d.tcp_address(),
        verify=str(pki.ca),
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=30,
    )


def test_silent_tls_connections_are_closed_and_a_new_client_served(
    daemon_factory: DaemonFactory,
    pki: Pki,  # noqa: F811
) -> None:
    d = _tls_daemon(daemon_factory, pki)
    address = urlsplit(d.tcp_address())
    assert address.hostname == "127.0.0.1"
    with _sockets(200, socket.AF_INET, ("127.0.0.1", address.port or 0)) as socks:
        # While they hang on, the listener still serves (200 < max_connections).
        with _tls_client(d, pki) as c:
            assert c.get("/healthz").status_code == 200
        answers = _wait_all_closed(socks, DEADLINE)
    assert answers == [b""] * 200  # no TLS, so nothing to say: just closed
    with _tls_client(d, pki) as c:
        assert c.get("/readyz").status_code == 200
    lines = [ln for ln in d.stderr().splitlines() if "tls_handshake_timeout" in ln]
    assert 1 <= len(lines) <= 3, lines  # one line, a summary later: not 200
    assert "Traceback" not in d.stderr()


def test_silent_connections_after_tls_are_closed_too(
    daemon_factory: DaemonFactory,
    pki: Pki,  # noqa: F811
) -> None:
    """A client that completes the handshake and then says nothing."""
    import ssl

    d = _tls_daemon(daemon_factory, pki)
    address = urlsplit(d.tcp_address())
    context = ssl.create_default_context(cafile=str(pki.ca))
    raw = socket.create_connection(("127.0.0.1", address.port or 0))
    tls = context.wrap_socket(raw, server_hostname="127.0.0.1")
    try:
        tls.settimeout(DEADLINE)
        started = time.monotonic()
        try:
            assert tls.recv(1024) == b""
        except (ConnectionResetError, ssl.SSLError):
            pass
        assert time.monotonic() - started < DEADLINE
    finally:
        tls.close()


def test_silent_unix_connections_are_closed_within_the_idle_timeout(
    daemon_factory: DaemonFactory,
) -> None:
    d = daemon_factory({"api": LIMITS})
    with _sockets(50, socket.AF_UNIX, d.socket_path) as socks:
        answers = _wait_all_closed(socks, DEADLINE)
    assert answers == [b""] * 50  # nothing asked, nothing answered
    with d.client() as c:
        assert c.get("/healthz").status_code == 200


def _slow_request(d: Daemon, head: bytes, endless: bytes) -> tuple[bytes, bool]:
    """Send ``head``, then ``endless`` one byte at a time until the server
    closes; (what it answered, whether it closed while we were still sending)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(d.socket_path)
    try:
        s.sendall(head)
        s.setblocking(False)
        end = time.monotonic() + DEADLINE
        sent = 0
        while time.monotonic() < end:
            readable, _, _ = select.select([s], [], [], 0.1)
            if readable:
                answer = _closed_by_peer(s)
                if answer is not None:
                    return answer, True
            try:
                s.send(endless[sent % len(endless) : sent % len(endless) + 1])
                sent += 1
            except (BrokenPipeError, ConnectionResetError):
                return _closed_by_peer(s) or _RECEIVED.pop(s.fileno(), b""), True
        return b"", False
    finally:
        _RECEIVED.pop(s.fileno(), None)
        s.close()


def _envelope(answer: bytes) -> tuple[int, dict[str, object]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body)


@pytest.mark.parametrize("where", ["headers", "body"])
def test_slow_request_is_cut_off_with_408(daemon_factory: DaemonFactory, where: str) -> None:
    d = daemon_factory({"api": LIMITS})
    if where == "headers":
        head, endless = b"GET /v1/vifs HTTP/1.1\r\nhost: vifplug\r\nx-slow: ", b"a"
    else:
        head = (
            b"PUT /v1/vifs/x/status HTTP/1.1\r\nhost: vifplug\r\n"
            b"content-type: application/json\r\ncontent-length: 100000\r\n\r\n"
        )
        endless = b" "
    answer, while_sending = _slow_request(d, head, endless)
    assert while_sending, "the slow request was never cut off"
    status, body = _envelope(answer)
    assert status == 408, answer
    assert body["error"]["code"] == "request_timeout", body  # type: ignore[index]
    with d.client() as c:
        assert c.get("/healthz").status_code == 200


def test_connections_over_the_limit_are_refused_and_logged_once(
    daemon_factory: DaemonFactory,
) -> None:
    limit = 20
    d = daemon_factory(
        {"api": {"max_connections": limit, "idle_timeout": 120, "request_timeout": 120}}
    )
    with _sockets(limit, socket.AF_UNIX, d.socket_path) as held:
        with _sockets(100, socket.AF_UNIX, d.socket_path) as extra:
            assert _wait_all_closed(extra, DEADLINE) == [b""] * 100
        started = time.monotonic()
        with pytest.raises(httpx.TransportError), d.client(timeout=DEADLINE) as c:
            c.get("/healthz")
        assert time.monotonic() - started < DEADLINE  # refused, not a hang
        assert len(held) == limit
    # The held ones are gone: a client is served again.
    end = time.monotonic() + DEADLINE
    while True:
        with contextlib.suppress(httpx.TransportError), d.client() as c:
            if c.get("/healthz").status_code == 200:
                break
        assert time.monotonic() < end, d.stderr()
        time.sleep(0.2)
    # One line at once, one summary with the count when the window ends.
    end = time.monotonic() + DEADLINE
    while True:
        lines = [ln for ln in d.stderr().splitlines() if "refused a connection" in ln]
        counted = [re.search(r"\((\d+) more times", ln) for ln in lines]
        if any(counted):
            break
        assert time.monotonic() < end, lines
        time.sleep(0.5)
    assert len(lines) == 2, lines
    assert sum(int(m.group(1)) for m in counted if m) + 1 >= 101, lines
    assert "Traceback" not in d.stderr()


def test_body_of_8_mib_over_tcp_gets_413_with_the_envelope(
    daemon_factory: DaemonFactory,
    pki: Pki,  # noqa: F811
) -> None:
    """Over TCP, closing with the body unread resets the connection and the
    client, still sending, loses the answer: the daemon reads it first."""
    d = _tls_daemon(daemon_factory, pki)
    raw = b'{"vif": "' + b"x" * (8 * 1024 * 1024) + b'"}'
    with _tls_client(d, pki) as c:
        r = c.post("/v1/vifs", content=raw, headers={"content-type": "application/json"})
        assert r.status_code == 413, r.text[:2000]
        assert r.json()["error"]["code"] == "request_too_large"
        assert c.get("/healthz").status_code == 200
        assert c.get("/v1/vifs").json() == {"vifs": []}


def test_body_of_8_mib_sent_whole_gets_413_before_the_connection_closes(
    daemon_factory: DaemonFactory,
) -> None:
    """A client that writes its whole body before reading (as most do)."""
    d = daemon_factory({"api": {"listen": "127.0.0.1:0", "insecure": True, **LIMITS}})
    address = urlsplit(d.tcp_address())
    body = b'{"vif": "' + b"x" * (8 * 1024 * 1024) + b'"}'
    head = (
        b"POST /v1/vifs HTTP/1.1\r\nhost: vifplug\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body)
    )
    with socket.create_connection(("127.0.0.1", address.port or 0), timeout=DEADLINE) as s:
        s.sendall(head + body)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    status, envelope = _envelope(answer)
    assert status == 413, answer[:2000]
    assert envelope["error"]["code"] == "request_too_large"  # type: ignore[index]


def test_a_request_computed_past_the_request_timeout_is_answered_and_so_is_the_next(
    daemon_factory: DaemonFactory,
) -> None:
    """The request timer stops once a request is received, however long its
    answer takes, also with a second request pipelined behind it (the parser
    reads that one while the first is computed)."""
    d = daemon_factory({"api": LIMITS})
    # libvirt's tap to make: the ofport never comes, the plug waits its timeout out.
    vif = ovs_vif(bridge=d.bridge, name=unique("vpq"), profile={"create_tap": False})
    body = json.dumps({"vif": vif, "instance": instance()}).encode()
    plug = (
        b"POST /v1/vifs?wait=ofport&timeout=%g HTTP/1.1\r\nhost: vifplug\r\n"
        b"content-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
        % (REQUEST + 2, len(body), body)
    )
    answers = b""
    with _sockets(1, socket.AF_UNIX, d.socket_path) as (s,):
        s.sendall(plug + b"GET /healthz HTTP/1.1\r\nhost: vifplug\r\n\r\n")
        end = time.monotonic() + DEADLINE
        while answers.count(b"HTTP/1.1 ") < 2 or not answers.endswith(b"}"):
            assert time.monotonic() < end, answers
            readable, _, _ = select.select([s], [], [], 0.5)
            if readable:
                chunk = s.recv(65536)
                assert chunk, f"closed after {answers!r}"
                answers += chunk
    statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", answers)
    assert statuses == [b"504", b"200"], answers
    assert b"plug_timeout" in answers
    with d.client() as c:
        assert c.delete(f"/v1/vifs/{vif_id_of(vif)}").status_code == 204
