"""``vifplug``: the command-line client of vifplugd's HTTP API v1.

It exists so that an operator (and a shell script) can do by hand what the
compute service and the network manager do through the API: look at what the
host can plug, plug and unplug VIFs, flip ``iface-status``, list networks,
and purge what a lost state left behind.
It is deliberately a thin client: every decision stays in the daemon, and the
CLI only turns the API's JSON into tables for people (or passes it through
with ``--json``) and the API's error envelope into an exit status.

Exit status: 0 on success, 1 when the daemon refused (its message on stderr),
2 for usage errors (bad options, unreadable plug file), 3 when the daemon
cannot be reached at all (the message says which socket or URL was tried).

It talks to the unix socket by default and to the TCP listener (TLS and a
bearer token) with ``--url``.  It imports nothing else of vifplug, so it starts
fast and works against a daemon of another version.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import errno
import json
import os
import re
import ssl
import sys
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NoReturn, Protocol, TextIO

import httpx

from vifplug import __version__

#: Kept equal to ``[api] socket_path``'s default (a unit test checks it); not
#: imported from ``vifplug.conf`` so that the CLI does not load oslo.config.
DEFAULT_SOCKET = "/run/vifplug/vifplug.sock"
SOCKET_ENV = "VIFPLUG_SOCKET"

EXIT_OK = 0
EXIT_API_ERROR = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3

#: Seconds to wait for any answer. A plug with ``--timeout T`` waits at least
#: T plus a margin, so that the daemon's own timeout answers first with a
#: useful error instead of the client giving up blindly.
DEFAULT_REQUEST_TIMEOUT = 120.0
PLUG_TIMEOUT_MARGIN = 30.0
CONNECT_TIMEOUT = 10.0

WAIT_MODES = ("ofport", "none", "ovn-installed")
IFACE_STATUSES = ("active", "inactive")

_VERSION_RE = re.compile(r"^\d+\.\d+$")
_MANIFEST_ITEM_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*:\d+\.\d+$")

# Keys of an oslo.versionedobjects primitive.
_OVO_NAME = "versioned_object.name"
_OVO_VERSION = "versioned_object.version"
_OVO_DATA = "versioned_object.data"


# --- failures the CLI reports ---------------------------------------------------------


class CliError(Exception):
    """A failure that ends the command with ``exit_status`` and a message."""

    exit_status = EXIT_API_ERROR


class UsageError(CliError):
    """The command line (or a file it names) is wrong; nothing was sent."""

    exit_status = EXIT_USAGE


class Unreachable(CliError):
    """No answer from the daemon: wrong socket, daemon down, TLS failure, timeout."""

    exit_status = EXIT_UNREACHABLE


class ApiError(CliError):
    """The daemon answered with an error status (and, normally, an envelope)."""

    exit_status = EXIT_API_ERROR

    def __init__(
        self, *, status: int, code: str, message: str, details: Mapping[str, Any], body: Any
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = dict(details)
        self.body = body


# --- where the daemon is --------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """How to reach vifplugd: a unix socket, or a URL with TLS and a token."""

    socket_path: str | None = None
    url: str | None = None
    token: str | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    def describe(self) -> str:
        """Where we tried, for error messages a person can act on."""
        if self.url is not None:
            return f"URL {self.url}"
        return f"unix socket {self.socket_path}"


def _tls_context(endpoint: Endpoint) -> ssl.SSLContext:
    """Verification against ``--ca-file`` (else the system CAs), plus a client
    certificate when the daemon's listener requires one."""
    try:
        ctx = ssl.create_default_context(cafile=endpoint.ca_file)
        if endpoint.cert_file is not None:
            ctx.load_cert_chain(endpoint.cert_file, endpoint.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"cannot load the TLS files: {exc}") from exc
    return ctx


def make_client(endpoint: Endpoint, *, timeout: float) -> httpx.Client:
    """An httpx client bound to the endpoint; the caller closes it."""
    headers = {"Accept": "application/json", "User-Agent": "vifplug-cli"}
    if endpoint.token is not None:
        headers["Authorization"] = f"Bearer {endpoint.token}"
    limit = httpx.Timeout(timeout, connect=CONNECT_TIMEOUT)
    if endpoint.url is not None:
        verify: ssl.SSLContext | bool = True
        if endpoint.url.startswith("https:"):
            verify = _tls_context(endpoint)
        return httpx.Client(base_url=endpoint.url, headers=headers, timeout=limit, verify=verify)
    # The host part of the URL only fills the Host header; the socket decides.
    # No environment proxies: they must never capture a local socket's traffic.
    transport = httpx.HTTPTransport(uds=endpoint.socket_path)
    return httpx.Client(
        base_url="http://vifplugd",
        headers=headers,
        timeout=limit,
        transport=transport,
        trust_env=False,
    )


def _os_error(exc: BaseException) -> OSError | None:
    """The OSError behind an httpx transport error, if there is one."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _unreachable(endpoint: Endpoint, exc: httpx.TransportError, timeout: float) -> Unreachable:
    """A message that says where we tried and what to check."""
    where = endpoint.describe()
    if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout):
        return Unreachable(
            f"vifplugd at {where} did not answer within {timeout:g} seconds; "
            "the request may still complete (check with 'vifplug list')"
        )
    hint = ""
    oserr = _os_error(exc)
    if oserr is not None and endpoint.url is None:
        if oserr.errno == errno.ENOENT:
            hint = f" (is vifplugd running? choose the socket with --socket or ${SOCKET_ENV})"
        elif oserr.errno == errno.ECONNREFUSED:
            hint = " (nothing listens on it: is vifplugd running?)"
        elif oserr.errno in (errno.EACCES, errno.EPERM):
            hint = " (is your user in the socket's group?)"
    reason = str(exc) or type(exc).__name__
    return Unreachable(f"cannot reach vifplugd at {where}: {reason}{hint}")


def _api_error(response: httpx.Response) -> ApiError:
    """The daemon's error envelope, or a stand-in when the body is not one
    (a proxy's HTML page, an older daemon)."""
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        details = error.get("details")
        return ApiError(
            status=response.status_code,
            code=str(error.get("code") or "unknown"),
            message=error["message"],
            details=details if isinstance(details, dict) else {},
            body=body,
        )
    text = response.text.strip()
    message = f"vifplugd answered HTTP {response.status_code} {response.reason_phrase}"
    if text:
        message += f": {text[:200]}"
    return ApiError(
        status=response.status_code,
        code=f"http_{response.status_code}",
        message=message,
        details={},
        body=body,
    )


class Api:
    """The API calls the commands make; each returns the decoded JSON body
    (``None`` for an empty one) or raises ``ApiError`` / ``Unreachable``."""

    def __init__(self, endpoint: Endpoint, *, timeout: float) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self._client = make_client(endpoint, timeout=timeout)

    def close(self) -> None:
        self._client.close()

    def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        timeout: float | None = None,
    ) -> tuple[int, Any]:
        """One request; returns the status and the decoded body."""
        wait = self.timeout if timeout is None else timeout
        kwargs: dict[str, Any] = {
            "params": dict(params or {}),
            "timeout": httpx.Timeout(wait, connect=CONNECT_TIMEOUT),
        }
        if body is not None:
            kwargs["json"] = body
        try:
            response = self._client.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise _unreachable(self.endpoint, exc, wait) from exc
        if response.status_code >= 400:
            raise _api_error(response)
        if not response.content:
            return response.status_code, None
        try:
            return response.status_code, response.json()
        except ValueError:
            return response.status_code, response.text


# --- rendering for people --------------------------------------------------------------


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ",".join(_cell(v) for v in value) or "-"
    if isinstance(value, dict):
        if _OVO_NAME in value:
            return f"{value[_OVO_NAME]} {value.get(_OVO_VERSION, '')}".strip()
        return json.dumps(value, sort_keys=True)
    return str(value)


def format_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Left-aligned columns, two spaces apart; nothing is truncated (VIF ids
    must be copyable whole)."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, text in enumerate(row):
            widths[i] = max(widths[i], len(text))
    lines = []
    for row in [list(headers), *cells]:
        lines.append("  ".join(t.ljust(w) for t, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def format_fields(pairs: Iterable[tuple[str, Any]]) -> str:
    """A ``NAME: value`` listing for one object."""
    items = [(name, _cell(value)) for name, value in pairs]
    width = max((len(name) for name, _ in items), default=0) + 1
    return "\n".join(f"{(name + ':').ljust(width)} {value}" for name, value in items)


def _when(value: Any) -> Any:
    """A time of the API (RFC 3339; an older daemon sent epoch numbers, 0
    meaning "not recorded") as local ISO time; anything else unchanged."""
    if isinstance(value, str):
        try:
            moment = datetime.datetime.fromisoformat(value)
        except ValueError:
            return value
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=datetime.UTC)
        return moment.astimezone().isoformat(timespec="seconds")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value <= 0:
            return None
        moment = datetime.datetime.fromtimestamp(value, tz=datetime.UTC).astimezone()
        return moment.isoformat(timespec="seconds")
    return value


def _instance(vif: Mapping[str, Any]) -> Any:
    inst = vif.get("instance")
    if isinstance(inst, dict):
        return inst.get("name") or inst.get("uuid")
    return inst if inst is not None else vif.get("instance_name") or vif.get("instance_uuid")


def _instance_long(vif: Mapping[str, Any]) -> Any:
    inst = vif.get("instance")
    if isinstance(inst, dict):
        name, uuid = inst.get("name"), inst.get("uuid")
        if name and uuid:
            return f"{name} ({uuid})"
        return name or uuid
    return _instance(vif)


def _vif_object(vif: Mapping[str, Any]) -> Any:
    obj = vif.get("vif_object")
    if isinstance(obj, dict):
        return f"{obj.get('name', '?')} {obj.get('version', '')}".strip()
    return obj


def _teaming(vif: Mapping[str, Any]) -> Any:
    """A failover pair member's role and its peer's short id: ``transient:1a2b3c4d``."""
    role, peer = vif.get("teaming_type"), vif.get("teaming_peer")
    if not role:
        return None
    return f"{role}:{str(peer)[:8]}" if peer else role


VIF_COLUMNS: tuple[tuple[str, Callable[[Mapping[str, Any]], Any]], ...] = (
    ("VIF ID", lambda v: v.get("vif_id", v.get("id"))),
    ("INSTANCE", _instance),
    ("PLUGIN", lambda v: v.get("plugin")),
    ("DEVICE", lambda v: v.get("device")),
    ("BRIDGE", lambda v: v.get("bridge")),
    ("OFPORT", lambda v: v.get("ofport")),
    ("IFACE-STATUS", lambda v: v.get("iface_status")),
    ("STATE", lambda v: v.get("lifecycle", v.get("state"))),
    ("TEAMING", _teaming),
)

#: The detail view of one VIF: label, API key (or a function of the VIF).
VIF_FIELDS: tuple[tuple[str, str | Callable[[Mapping[str, Any]], Any]], ...] = (
    ("VIF ID", "vif_id"),
    ("Instance", _instance_long),
    ("Plugin", "plugin"),
    ("VIF object", _vif_object),
    ("State", "lifecycle"),
    ("Device", "device"),
    ("Bridge", "bridge"),
    ("Port", "port"),
    ("OFPort", "ofport"),
    ("iface-id", "iface_id"),
    ("iface-status", "iface_status"),
    ("MAC", "mac"),
    ("Network", "network"),
    ("Pool device", "pool_device"),
    ("Mode", "mode"),
    ("Portgroup", "portgroup"),
    ("Teaming", "teaming_type"),
    ("Teaming peer", "teaming_peer"),
    ("Created", lambda v: _when(v.get("created_at"))),
    ("Updated", lambda v: _when(v.get("updated_at"))),
)
_VIF_KEYS_SHOWN = {
    "vif_id",
    "instance",
    "plugin",
    "vif_object",
    "lifecycle",
    "device",
    "bridge",
    "port",
    "ofport",
    "iface_id",
    "iface_status",
    "mac",
    "network",
    "pool_device",
    "mode",
    "portgroup",
    "teaming_type",
    "teaming_peer",
    "created_at",
    "updated_at",
}


def vif_fields(vif: Mapping[str, Any]) -> list[tuple[str, str, Any]]:
    """(label, API key, value) of every field the API gave for one VIF
    (fields a newer daemon adds included)."""
    pairs: list[tuple[str, str, Any]] = []
    for label, key in VIF_FIELDS:
        if callable(key):
            pairs.append((label, column_key(label), key(vif)))
        else:
            pairs.append((label, key, vif.get(key)))
    pairs.extend((key, key, value) for key, value in vif.items() if key not in _VIF_KEYS_SHOWN)
    return pairs


def render_vif(vif: Mapping[str, Any]) -> str:
    """One VIF, every field the API gave (fields a newer daemon adds included)."""
    return format_fields((label, value) for label, _, value in vif_fields(vif))


#: The API keys ``-c`` also accepts for the columns of ``list``.
VIF_COLUMN_KEYS: tuple[tuple[str, ...], ...] = (
    ("vif_id", "id"),
    ("instance",),
    ("plugin",),
    ("device",),
    ("bridge",),
    ("ofport",),
    ("iface_status", "status"),
    ("lifecycle", "state"),
    ("teaming_type", "teaming_peer", "teaming"),
)


def render_vifs(vifs: Iterable[Mapping[str, Any]]) -> str:
    return format_table(
        [h for h, _ in VIF_COLUMNS], ([get(v) for _, get in VIF_COLUMNS] for v in vifs)
    )


def _ovo(primitive: Any) -> tuple[str, str, dict[str, Any]]:
    """(name, version, data) of a versioned-object primitive; tolerant of junk."""
    if not isinstance(primitive, dict):
        return "?", "?", {}
    data = primitive.get(_OVO_DATA)
    return (
        str(primitive.get(_OVO_NAME, "?")),
        str(primitive.get(_OVO_VERSION, "?")),
        data if isinstance(data, dict) else {},
    )


def _range(data: Mapping[str, Any]) -> str:
    low, high = data.get("min_version"), data.get("max_version")
    return str(low) if low == high else f"{low}-{high}"


def render_host_info(host_info: Any) -> str:
    """One row per (plugin, VIF object) with version ranges and port profiles."""
    name, version, data = _ovo(host_info)
    rows: list[list[Any]] = []
    for plugin in data.get("plugin_info") or []:
        _, _, pdata = _ovo(plugin)
        vifs = pdata.get("vif_info") or []
        if not vifs:
            rows.append([pdata.get("plugin_name"), None, None, None])
        for vif_info in vifs:
            _, _, vdata = _ovo(vif_info)
            profiles = []
            for profile in vdata.get("supported_port_profiles") or []:
                _, _, prdata = _ovo(profile)
                profiles.append(f"{prdata.get('profile_object_name')} {_range(prdata)}")
            rows.append(
                [
                    pdata.get("plugin_name"),
                    vdata.get("vif_object_name"),
                    _range(vdata),
                    ", ".join(profiles),
                ]
            )
    table = format_table(["PLUGIN", "VIF OBJECT", "VERSIONS", "PORT PROFILES"], rows)
    return f"{name} {version}\n\n{table}"


def _items(body: Any, key: str) -> list[dict[str, Any]]:
    """The list in ``{key: [...]}`` (the API's shape), or a bare list."""
    items = body.get(key) if isinstance(body, dict) else body
    if not isinstance(items, list):
        raise CliError(f"vifplugd answered an unexpected body (no {key!r} list)")
    return [i for i in items if isinstance(i, dict)]


def render_networks(networks: Sequence[Mapping[str, Any]]) -> str:
    """The networks, then which VIF holds which pool device."""
    rows = []
    for net in networks:
        portgroups = [
            f"{pg.get('name')}{'*' if pg.get('default') else ''}"
            for pg in net.get("portgroups") or []
            if isinstance(pg, dict)
        ]
        devices = [d.get("device") for d in net.get("devices") or [] if isinstance(d, dict)]
        rows.append(
            [
                net.get("name"),
                net.get("type"),
                net.get("bridge"),
                net.get("mode") if net.get("type") == "direct" else None,
                devices,
                portgroups,
            ]
        )
    out = format_table(["NETWORK", "TYPE", "BRIDGE", "MODE", "DEVICES", "PORTGROUPS"], rows)
    holders = []
    for net in networks:
        for dev in net.get("devices") or []:
            if isinstance(dev, dict):
                holders.append([net.get("name"), dev.get("device"), dev.get("vifs") or []])
    if holders:
        out += "\n\n" + format_table(["NETWORK", "DEVICE", "VIFS"], holders)
    if any(
        pg.get("default")
        for net in networks
        for pg in net.get("portgroups") or []
        if isinstance(pg, dict)
    ):
        out += "\n\n* default portgroup"
    return out


# --- commands -------------------------------------------------------------------------


def column_key(name: str) -> str:
    """A column or field name as ``-c`` matches it: ``"VIF ID"``, ``vif-id``
    and ``vif_id`` are one column."""
    return re.sub(r"[\s_-]+", "_", name.strip()).lower()


@dataclasses.dataclass
class Context:
    """What every command needs: the API, the output mode and the streams.

    ``fmt`` is ``table`` (for people), ``value`` (the cells alone, for shell
    scripts, as OpenStack's ``-f value``) or ``json`` (the API's body);
    ``columns`` (``-c``) selects and orders the columns of a table or the
    fields of one object."""

    api: Api
    json: bool
    stdout: TextIO
    stdin: TextIO
    fmt: str = "table"
    columns: tuple[str, ...] = ()

    def emit_json(self, body: Any) -> None:
        if body is not None:
            self.stdout.write(json.dumps(body, indent=2) + "\n")

    def emit(self, text: str) -> None:
        self.stdout.write(text + "\n")

    def _select(self, names: Sequence[str], keys: Sequence[Sequence[str]]) -> list[int]:
        """Indexes of the ``-c`` columns among ``names`` (each also known by
        ``keys``); all of them without ``-c``."""
        if not self.columns:
            return list(range(len(names)))
        known = [
            {column_key(n), *(column_key(k) for k in ks)} for n, ks in zip(names, keys, strict=True)
        ]
        chosen = []
        for wanted in self.columns:
            index = next((i for i, ks in enumerate(known) if column_key(wanted) in ks), None)
            if index is None:
                raise UsageError(
                    f"no column {wanted!r}; the columns are: " + ", ".join(map(column_key, names))
                )
            chosen.append(index)
        return chosen

    def table(
        self,
        headers: Sequence[str],
        rows: Iterable[Sequence[Any]],
        keys: Sequence[Sequence[str]] = (),
    ) -> None:
        """Rows as a table, or with ``-f value`` one line of cells per row
        (one space apart, ``-`` for none, no header)."""
        keys = list(keys) or [() for _ in headers]
        chosen = self._select(headers, keys)
        picked = [[row[i] for i in chosen] for row in rows]
        if self.fmt == "value":
            for row in picked:
                self.emit(" ".join(_cell(v) for v in row))
        else:
            self.emit(format_table([headers[i] for i in chosen], picked))

    def fields(self, pairs: Sequence[tuple[str, str, Any]]) -> None:
        """One object's (label, API key, value)s; with ``-f value`` one value a line."""
        chosen = self._select([label for label, _, _ in pairs], [(key,) for _, key, _ in pairs])
        if self.fmt == "value":
            for i in chosen:
                self.emit(_cell(pairs[i][2]))
        else:
            self.emit(format_fields((pairs[i][0], pairs[i][2]) for i in chosen))


def cmd_host_info(ctx: Context, args: argparse.Namespace) -> None:
    params: dict[str, str] = {}
    if args.version is not None:
        params["version"] = args.version
    if args.manifest is not None:
        params["manifest"] = args.manifest
    _, body = ctx.api.call("GET", "/v1/host-info", params=params)
    if ctx.json:
        ctx.emit_json(body)
    else:
        ctx.emit(render_host_info(body))


def _read_plug_body(source: str, stdin: TextIO) -> Any:
    """The POST /v1/vifs body from a file or stdin; only checked to be a JSON
    object, the daemon judges the rest."""
    try:
        if source == "-":
            text = stdin.read()
        else:
            with open(source, encoding="utf-8") as f:
                text = f.read()
    except OSError as exc:
        raise UsageError(f"cannot read {source}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise UsageError(f"{source} is not UTF-8 text: {exc}") from exc
    name = "standard input" if source == "-" else source
    try:
        body = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{name} is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise UsageError(
            f"{name} must hold a JSON object "
            '{"vif": <VIF primitive>, "instance": <InstanceInfo primitive>}'
        )
    return body


def cmd_plug(ctx: Context, args: argparse.Namespace) -> None:
    body = _read_plug_body(args.file, ctx.stdin)
    params: dict[str, str] = {}
    if args.wait is not None:
        params["wait"] = args.wait
    timeout = None
    if args.timeout is not None:
        params["timeout"] = f"{args.timeout:g}"
        timeout = max(ctx.api.timeout, args.timeout + PLUG_TIMEOUT_MARGIN)
    status, answer = ctx.api.call("POST", "/v1/vifs", params=params, body=body, timeout=timeout)
    if ctx.json:
        ctx.emit_json(answer)
        return
    vif = answer if isinstance(answer, dict) else {}
    vif_id = vif.get("vif_id", "?")
    if ctx.fmt == "value":
        ctx.fields(vif_fields(vif))
        return
    if status == 201:
        ctx.emit(f"Plugged VIF {vif_id}.")
    else:
        ctx.emit(f"VIF {vif_id} was already plugged with this request; nothing changed.")
    if vif:
        ctx.fields(vif_fields(vif))


def cmd_unplug(ctx: Context, args: argparse.Namespace) -> None:
    """With ``--if-exists``, a VIF the daemon does not know is success: the
    state the caller wants (no such VIF) holds, as ``ovs-vsctl --if-exists
    del-port`` and ``ip link del`` in scripts that clean up."""
    try:
        _, answer = ctx.api.call("DELETE", f"/v1/vifs/{_path_id(args.vif_id)}")
    except ApiError as error:
        if not (args.if_exists and error.status == 404 and error.code == "vif_not_found"):
            raise
        if not ctx.json:
            ctx.emit(f"VIF {args.vif_id} is not plugged; nothing to do.")
        return
    if ctx.json:
        ctx.emit_json(answer)
    else:
        ctx.emit(f"Unplugged VIF {args.vif_id}.")


def _matches(vif: Mapping[str, Any], args: argparse.Namespace) -> bool:
    """The ``list`` filters: all given ones must hold."""
    if args.instance is not None:
        inst = vif.get("instance")
        names = {inst.get("uuid"), inst.get("name")} if isinstance(inst, dict) else {inst}
        if args.instance not in names:
            return False
    if args.bridge is not None and vif.get("bridge") != args.bridge:
        return False
    state = vif.get("lifecycle", vif.get("state"))
    return args.state is None or state == args.state


def cmd_list(ctx: Context, args: argparse.Namespace) -> None:
    """Filters are applied here, to the whole list the API answers: the
    daemon's list has no query parameters, and a host holds hundreds of VIFs,
    not millions."""
    headers = [h for h, _ in VIF_COLUMNS]
    ctx._select(headers, VIF_COLUMN_KEYS)  # an unknown -c is refused before asking
    _, body = ctx.api.call("GET", "/v1/vifs")
    vifs = [v for v in _items(body, "vifs") if _matches(v, args)]
    if ctx.json:
        filtered = any(f is not None for f in (args.instance, args.bridge, args.state))
        ctx.emit_json({**body, "vifs": vifs} if filtered and isinstance(body, dict) else body)
        return
    ctx.table(
        headers,
        ([get(v) for _, get in VIF_COLUMNS] for v in vifs),
        VIF_COLUMN_KEYS,
    )


def cmd_show(ctx: Context, args: argparse.Namespace) -> None:
    _, body = ctx.api.call("GET", f"/v1/vifs/{_path_id(args.vif_id)}")
    if ctx.json:
        ctx.emit_json(body)
    else:
        ctx.fields(vif_fields(body if isinstance(body, dict) else {}))


def cmd_set_status(ctx: Context, args: argparse.Namespace) -> None:
    payload: dict[str, Any] = {"iface_status": args.status}
    if args.allow_dual_active:
        payload["allow_dual_active"] = True
    _, body = ctx.api.call("PUT", f"/v1/vifs/{_path_id(args.vif_id)}/status", body=payload)
    if ctx.json:
        ctx.emit_json(body)
        return
    status = body.get("iface_status", args.status) if isinstance(body, dict) else args.status
    ctx.emit(f"VIF {args.vif_id} iface-status is {status}.")


def cmd_networks(ctx: Context, args: argparse.Namespace) -> None:
    _, body = ctx.api.call("GET", "/v1/networks")
    if ctx.json:
        ctx.emit_json(body)
    else:
        ctx.emit(render_networks(_items(body, "networks")))


def render_leaks(body: Any) -> str:
    """What a purge would remove, and whether the leak guard holds."""
    leaks: dict[str, Any] = body if isinstance(body, dict) else {}
    found = leaks.get("guard")
    guard: dict[str, Any] = found if isinstance(found, dict) else {}
    rows = [("port", p.get("name"), p.get("vif_id")) for p in _items(leaks, "ports")]
    rows += [("device", d, None) for d in leaks.get("devices") or [] if isinstance(d, str)]
    lines = []
    if guard.get("held"):
        lines.append(
            f"The leak guard holds since {_cell(_when(guard.get('since')))}: {guard.get('reason')}."
        )
        lines.append("Reconciliation removes nothing until the leaks are purged.")
    if not rows:
        lines.append("Nothing carries this daemon's marks without a VIF to account for it.")
    else:
        lines.append(format_table(["KIND", "NAME", "VIFPLUG-VIF-ID"], rows))
    return "\n".join(lines)


def cmd_reload(ctx: Context, args: argparse.Namespace) -> None:
    """Returns once the daemon has applied the new definitions, so that
    ``systemctl reload`` (``ExecReload=``) returns when the reload is done,
    and fails when it could not be applied."""
    _, body = ctx.api.call("POST", "/v1/reload")
    if ctx.json:
        ctx.emit_json(body)
        return
    result = body if isinstance(body, dict) else {}
    names = ", ".join(result.get("networks") or []) or "none"
    ctx.emit(f"Reloaded: network(s) {names}.")
    kept = result.get("kept") or []
    if kept:
        ctx.emit(f"Kept {', '.join(kept)}, removed from the configuration but still in use.")


def cmd_leaks(ctx: Context, args: argparse.Namespace) -> None:
    _, body = ctx.api.call("GET", "/v1/leaks")
    if ctx.json:
        ctx.emit_json(body)
    else:
        ctx.emit(render_leaks(body))


def cmd_purge_leaks(ctx: Context, args: argparse.Namespace) -> None:
    """Without --yes, show what would go and remove nothing."""
    if not args.yes:
        _, body = ctx.api.call("GET", "/v1/leaks")
        if ctx.json:
            ctx.emit_json(body)
            return
        ctx.emit(render_leaks(body))
        if _items(body, "ports") or (isinstance(body, dict) and body.get("devices")):
            ctx.emit(
                "Nothing was removed. These may still serve running VMs; "
                "run again with --yes to remove them."
            )
        return
    _, body = ctx.api.call("POST", "/v1/leaks/purge", body={"confirm": True})
    if ctx.json:
        ctx.emit_json(body)
        return
    result = body if isinstance(body, dict) else {}
    ports = result.get("removed_ports") or []
    devices = result.get("removed_devices") or []
    ctx.emit(f"Removed {len(ports)} port(s) and {len(devices)} device(s); the leak guard is off.")
    for name in [*ports, *devices]:
        ctx.emit(f"  {name}")


COMPLETION_SHELLS = ("bash", "zsh", "tcsh", "fish")


def completion_script(shell: str) -> str:
    """The shell's completion script for ``vifplug``, made by shtab from the
    parser itself, so that it never disagrees with the options.  shtab is
    imported only here: every other command starts without it."""
    import shtab

    parser = build_parser()
    _mark_paths(parser, shtab.FILE)
    return str(shtab.complete(parser, shell=shell))


def _mark_paths(parser: argparse.ArgumentParser, files: Mapping[str, Any]) -> None:
    """Complete file names for the arguments that take a file or socket path."""
    for action in parser._actions:
        if action.metavar in ("FILE", "PATH"):
            action.complete = files  # type: ignore[attr-defined]
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _mark_paths(sub, files)


def cmd_completion(ctx: Context, args: argparse.Namespace) -> None:
    ctx.emit(completion_script(args.shell).rstrip("\n"))


def _path_id(vif_id: str) -> str:
    """A VIF id as exactly one path segment, whatever it contains; the daemon
    answers 404 for an id it does not know."""
    return urllib.parse.quote(vif_id, safe="")


# --- the command line ----------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so ``main`` returns the status."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        raise UsageError(message)


def _version(text: str) -> str:
    if not _VERSION_RE.match(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a version like 1.2")
    return text


def _manifest(text: str) -> str:
    items = [item.strip() for item in text.split(",") if item.strip()]
    bad = [item for item in items if not _MANIFEST_ITEM_RE.match(item)]
    if not items or bad:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a manifest like HostInfo:1.0,HostVIFInfo:1.0"
        )
    return ",".join(items)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds")
    return value


FORMATS = ("table", "value", "json")

#: Options valid before or after the subcommand; their defaults are applied
#: after parsing so that a subcommand's copy does not overwrite the main one.
_COMMON_DEFAULTS: dict[str, Any] = {
    "json": False,
    "format": None,
    "columns": [],
    "socket": None,
    "url": None,
    "token": None,
    "token_file": None,
    "ca_file": None,
    "cert_file": None,
    "key_file": None,
    "request_timeout": DEFAULT_REQUEST_TIMEOUT,
}


def _add_output(parser: argparse.ArgumentParser) -> None:
    """-f/-c/--json: shown in every command's help, since they shape its output."""
    s = argparse.SUPPRESS
    g = parser.add_argument_group("output")
    g.add_argument(
        "--json", action="store_true", default=s, help="print the API's JSON (same as -f json)"
    )
    g.add_argument(
        "-f",
        "--format",
        choices=FORMATS,
        default=s,
        help="table for people (the default); value: the cells alone, one row (or, for "
        "one VIF, one field) a line, '-' for none; json: the API's JSON",
    )
    g.add_argument(
        "-c",
        "--column",
        dest="columns",
        action="append",
        metavar="COLUMN",
        default=s,
        help="show only this column (or field), in this order; repeatable. "
        "Names as in the header, any case, '_' or '-' for spaces: -c vif_id -c ofport",
    )


def _add_connection(parser: argparse.ArgumentParser, *, shown: bool) -> None:
    """Where the daemon is. Accepted after the command too, but described
    once, in ``vifplug --help``: ``shown=False`` hides them from the commands'."""
    s = argparse.SUPPRESS
    if shown:
        g: Any = parser.add_argument_group("connection (these may also follow the command)")
    else:
        g = parser

    def add(*flags: str, help: str, **kwargs: Any) -> None:
        g.add_argument(*flags, default=s, help=help if shown else s, **kwargs)

    add(
        "--socket",
        metavar="PATH",
        help=f"vifplugd's unix socket (default: ${SOCKET_ENV}, else {DEFAULT_SOCKET})",
    )
    add("--url", help="talk to vifplugd's TCP listener instead, e.g. https://host:9697")
    add("--token", help="bearer token for --url (visible in ps; prefer --token-file)")
    add("--token-file", metavar="FILE", help="file holding the bearer token for --url")
    add(
        "--ca-file",
        metavar="FILE",
        help="CA bundle to verify vifplugd's certificate (--url https://)",
    )
    add(
        "--cert-file",
        metavar="FILE",
        help="client certificate, when the listener requires one",
    )
    add(
        "--key-file",
        metavar="FILE",
        help="private key of --cert-file (if not in the same file)",
    )
    add(
        "--request-timeout",
        metavar="SECONDS",
        type=_seconds,
        help=f"give up on an answer after this long (default {DEFAULT_REQUEST_TIMEOUT:g})",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="vifplug",
        description="Command-line client of vifplugd, the host-side VIF plugging daemon.",
        epilog="Exit status: 0 success, 1 the daemon refused, 2 usage error, "
        "3 the daemon cannot be reached. 'vifplug COMMAND --help' describes a command.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _add_connection(parser, shown=True)
    _add_output(parser)
    sub = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, parser_class=_Parser
    )

    def command(
        name: str,
        func: Callable[[Context, argparse.Namespace], None],
        help_text: str,
        *,
        tabular: bool = False,
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog="The connection options (--socket, --url, ...) of 'vifplug --help' "
            "may also follow the command.",
        )
        _add_connection(p, shown=False)
        _add_output(p)
        p.set_defaults(func=func, tabular=tabular)
        return p

    p = command("host-info", cmd_host_info, "Show what this host can plug (its HostInfo).")
    p.add_argument(
        "--version", type=_version, metavar="X.Y", help="ask for HostInfo at this version"
    )
    p.add_argument(
        "--manifest",
        type=_manifest,
        metavar="NAME:X.Y,...",
        help="object versions the reader knows, e.g. "
        "HostInfo:1.0,HostPluginInfo:1.0,HostVIFInfo:1.0",
    )

    p = command("plug", cmd_plug, "Plug a VIF described by a POST /v1/vifs body.", tabular=True)
    p.add_argument(
        "file",
        metavar="FILE",
        help='JSON file {"vif": ..., "instance": ...}, or - for standard input',
    )
    p.add_argument(
        "--wait",
        choices=WAIT_MODES,
        help="answer once the port has an ofport (the daemon's default), "
        "once ovn-controller installed its flows, or at once",
    )
    p.add_argument(
        "--timeout",
        type=_seconds,
        metavar="SECONDS",
        help="how long the daemon waits for --wait before failing",
    )

    _add_vif_commands(command)
    _add_host_commands(command)
    return parser


class _Command(Protocol):
    """``command(name, func, help, tabular=)`` of ``build_parser``: adds a subcommand."""

    def __call__(
        self,
        name: str,
        func: Callable[[Context, argparse.Namespace], None],
        help_text: str,
        *,
        tabular: bool = False,
    ) -> argparse.ArgumentParser: ...


def _add_vif_commands(command: _Command) -> None:
    """The commands about the VIFs already plugged."""
    p = command("unplug", cmd_unplug, "Unplug a VIF: remove its OVS port and device.")
    p.add_argument("vif_id", metavar="VIF_ID")
    p.add_argument(
        "--if-exists",
        action="store_true",
        help="succeed (exit 0) when the daemon has no such VIF, as ovs-vsctl --if-exists",
    )

    p = command("list", cmd_list, "List the VIFs plugged on this host.", tabular=True)
    p.add_argument("--instance", metavar="UUID_OR_NAME", help="only the VIFs of this instance")
    p.add_argument("--bridge", metavar="BRIDGE", help="only the VIFs on this OVS or linux bridge")
    p.add_argument(
        "--state",
        metavar="STATE",
        help="only the VIFs in this lifecycle state: plugging, plugged or unplugging",
    )

    p = command("show", cmd_show, "Show one plugged VIF.", tabular=True)
    p.add_argument("vif_id", metavar="VIF_ID")

    p = command(
        "set-status",
        cmd_set_status,
        "Set a VIF's iface-status; activating it deactivates the other "
        "interfaces with the same iface-id.",
    )
    p.add_argument("vif_id", metavar="VIF_ID")
    p.add_argument("status", choices=IFACE_STATUSES)
    p.add_argument(
        "--allow-dual-active",
        action="store_true",
        help="leave other interfaces with the same iface-id active "
        "(migration from this host to itself)",
    )


def _add_host_commands(command: _Command) -> None:
    """The commands about the host rather than one VIF: networks and leaks."""
    command(
        "networks",
        cmd_networks,
        "List the configured networks, their device pools and who holds what.",
    )
    command(
        "reload",
        cmd_reload,
        "Re-read the daemon's network definitions, as SIGHUP does, and return when "
        "they are in force (the unit's ExecReload=).",
    )
    command(
        "leaks",
        cmd_leaks,
        "List the ports and devices with this daemon's marks that no VIF accounts "
        "for, and whether the leak guard holds.",
    )
    p = command(
        "purge-leaks",
        cmd_purge_leaks,
        "Remove the ports and devices that no VIF accounts for (after a lost state, "
        "once the compute service has re-plugged its VIFs); without --yes, only list them.",
    )
    p.add_argument(
        "--yes",
        action="store_true",
        help="really remove them (they may still serve running VMs)",
    )
    p = command(
        "completion",
        cmd_completion,
        "Print the shell completion script, e.g. "
        "'vifplug completion bash > /etc/bash_completion.d/vifplug' "
        "or 'source <(vifplug completion bash)'.",
    )
    p.add_argument("shell", choices=COMPLETION_SHELLS)
    p.set_defaults(local=True)


def _read_token(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            token = f.read().strip()
    except OSError as exc:
        raise UsageError(f"cannot read the token file {path}: {exc.strerror or exc}") from exc
    if not token:
        raise UsageError(f"the token file {path} is empty")
    return token


def endpoint_from(args: argparse.Namespace, environ: Mapping[str, str]) -> Endpoint:
    """Where to connect, from the options and ``$VIFPLUG_SOCKET``."""
    if args.socket is not None and args.url is not None:
        raise UsageError("give either --socket or --url, not both")
    if args.token is not None and args.token_file is not None:
        raise UsageError("give either --token or --token-file, not both")
    token = _read_token(args.token_file) if args.token_file is not None else args.token
    if args.url is not None:
        if not re.match(r"^https?://[^/]", args.url):
            raise UsageError(f"--url {args.url!r} must start with https:// (or http://)")
        return Endpoint(
            url=args.url,
            token=token,
            ca_file=args.ca_file,
            cert_file=args.cert_file,
            key_file=args.key_file,
        )
    if any(v is not None for v in (args.ca_file, args.cert_file, args.key_file)):
        raise UsageError("--ca-file, --cert-file and --key-file only apply with --url")
    path = args.socket or environ.get(SOCKET_ENV) or DEFAULT_SOCKET
    return Endpoint(socket_path=path, token=token)


def output_format(args: argparse.Namespace) -> str:
    """table, value or json, from -f and --json; refused before anything is sent
    where a command cannot honour it."""
    if args.json and args.format not in (None, "json"):
        raise UsageError(f"--json and -f {args.format} contradict each other")
    fmt = "json" if args.json else args.format or "table"
    if fmt == "json" and args.columns:
        raise UsageError("-c selects table or value columns; -f json prints the API's body whole")
    if not args.tabular and (args.columns or fmt == "value"):
        raise UsageError(f"'{args.command}' has no columns for -f value or -c")
    return fmt


def _report(error: CliError, *, as_json: bool, stdout: TextIO, stderr: TextIO) -> None:
    if isinstance(error, ApiError):
        if as_json and error.body is not None:
            stdout.write(json.dumps(error.body, indent=2) + "\n")
        stderr.write(f"vifplug: error: {error.message} [{error.code}]\n")
    else:
        stderr.write(f"vifplug: error: {error}\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status (see the module docstring)."""
    parser = build_parser()
    as_json = False
    try:
        try:
            args = parser.parse_args(argv)
        except SystemExit as done:  # --help
            return done.code if isinstance(done.code, int) else EXIT_OK
        for key, value in _COMMON_DEFAULTS.items():
            if not hasattr(args, key):
                setattr(args, key, value)
        fmt = output_format(args)
        as_json = fmt == "json"
        if getattr(args, "local", False):  # talks to no daemon
            args.func(Context(api=None, json=False, stdout=sys.stdout, stdin=sys.stdin), args)  # type: ignore[arg-type]
            return EXIT_OK
        endpoint = endpoint_from(args, os.environ)
        api = Api(endpoint, timeout=args.request_timeout)
        try:
            ctx = Context(
                api=api,
                json=as_json,
                stdout=sys.stdout,
                stdin=sys.stdin,
                fmt=fmt,
                columns=tuple(args.columns),
            )
            args.func(ctx, args)
            sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        finally:
            api.close()
    except CliError as error:
        _report(error, as_json=as_json, stdout=sys.stdout, stderr=sys.stderr)
        return error.exit_status
    except KeyboardInterrupt:
        sys.stderr.write("vifplug: interrupted\n")
        return 130
    except BrokenPipeError:
        # `vifplug list | head -1`: the reader left, which is not an error of
        # ours; point stdout at /dev/null so the interpreter's final flush is quiet.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_OK
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
