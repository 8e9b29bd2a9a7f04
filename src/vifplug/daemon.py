"""``vifplugd``: wiring, listeners, signals and systemd notification.

The order of things is what systemd and the compute service rely on:

1. parse the configuration and check the listeners' settings (a TCP listener
   without TLS and token is refused before anything else happens);
2. take the listening sockets systemd passed (``vifplugd.socket``:
   ``vifplug.systemd.listen_fds``), or bind them (the unix socket 0660, the
   TCP listener, the metrics listener): before start-up, so that a client
   that connects meanwhile waits in the listen queue instead of failing;
3. start the engine (``vifplug.plugging.engine``: state loaded, OVSDB connected,
   host identity written, reconciliation done), retrying while OVSDB does not
   answer, telling systemd what it waits for (``STATUS=``) and, while a
   reconciliation makes progress, extending the start timeout; this runs in
   a thread so that SIGTERM is handled meanwhile;
4. serve the sockets with uvicorn servers in this process's event loop;
5. ``READY=1``, then push HostInfo to the network manager in the background.

``WATCHDOG=1`` (when ``WatchdogSec=`` is set) only while the OVSDB IDL thread
goes round its loop and the state writer runs.
SIGTERM (or SIGINT): ``STOPPING=1``, stop accepting, let in-flight requests
finish (at most ``[api] shutdown_timeout``), stop the engine, exit 0.
SIGHUP: ``RELOADING=1``, re-read the configuration files' network
definitions, push HostInfo again, ``READY=1``.  uvicorn installs no
handler of its own (``api.server``).

Before any of that, while the modules below are still being imported (2-3 s
on a cold machine), SIGTERM and SIGINT exit 0 at once and SIGHUP is ignored:
see ``_guard_start_up``, the first code this module runs.
"""

from __future__ import annotations

import os
import signal
import socket
import sys


def _exit_during_start_up(signum: int, frame: object) -> None:
    """SIGTERM/SIGINT before the event loop's handlers exist: nothing has been
    made yet that outlives the process (no socket, no state, no OVSDB write:
    the first of those comes after ``Daemon._main`` replaced this handler),
    so exit 0 at once, as a stop after start-up does.  ``os._exit``: nothing
    half-imported may catch a ``SystemExit`` and carry on."""
    os.write(2, f"vifplugd: {signal.Signals(signum).name} during start-up; exiting\n".encode())
    os._exit(0)  # EXIT_OK


def _ignore_during_start_up(signum: int, frame: object) -> None:
    """SIGHUP (reload) before there is anything to reload: ignored, as
    ``Daemon._on_hup`` ignores it until the engine runs; by default it
    would kill the process."""
    os.write(2, b"vifplugd: SIGHUP during start-up ignored\n")


def _is_program() -> bool:
    """This module is the program: ``python -m vifplug.daemon``, or the
    ``vifplugd`` console script, which imports it first."""
    return __name__ == "__main__" or os.path.basename(sys.argv[0]).startswith("vifplugd")


def _no_green_resolver() -> None:
    """Tell eventlet not to load its green DNS resolver.

    vifplug never uses eventlet, but it is imported all the same (by
    futurist under oslo.messaging, which oslo.versionedobjects imports, and by
    the ovs bindings' poller), and by default it then imports dnspython for
    a resolver nothing here calls: 15 MB of the daemon's memory and 0.2-0.4
    s of its start-up.  ``EVENTLET_NO_GREENDNS`` is eventlet's own switch;
    an operator's setting wins.  Only for the program: a process that merely
    imports this module keeps its environment."""
    if _is_program():
        os.environ.setdefault("EVENTLET_NO_GREENDNS", "yes")


def _guard_start_up() -> None:
    """Handle stop signals from the first line on, not only once the heavy
    imports below are done: a SIGTERM during them killed the process by the
    signal.  Only when this module is the program (``python -m
    vifplug.daemon``, or the ``vifplugd`` console script, which imports it
    first): a process that merely imports it keeps its own signal handling.
    What no Python code can cover is the interpreter's own start (some 10-50
    ms before this line runs), where the kernel's default action applies."""
    if not _is_program():
        return
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _exit_during_start_up)
    signal.signal(signal.SIGHUP, _ignore_during_start_up)


_guard_start_up()
_no_green_resolver()

import asyncio  # noqa: E402
import logging  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from typing import Any  # noqa: E402

# oslo.versionedobjects imports oslo.messaging, which imports oslo.service's
# eventlet backend; eventlet then warns on stderr at every start although
# vifplug never uses it.  Silence that one warning before those imports.
warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

import sdnotify  # noqa: E402
from oslo_config import cfg  # noqa: E402

from vifplug import __version__, conf, exceptions, records, systemd, threadnames  # noqa: E402
from vifplug.api import app as api_app  # noqa: E402
from vifplug.api import dependencies as api_deps  # noqa: E402
from vifplug.api import metrics as api_metrics  # noqa: E402
from vifplug.api import scrape, server  # noqa: E402
from vifplug.negotiation import push  # noqa: E402
from vifplug.plugging import engine, networks  # noqa: E402

LOG = logging.getLogger(__name__)

#: Seconds between attempts to start while OVSDB does not answer.
START_RETRY_SECONDS = 2.0
#: Seconds a SIGTERM during start-up waits for the blocked step before exiting.
ABANDON_START_SECONDS = 5.0
#: How much longer systemd's start timeout is extended each time a long
#: reconciliation reports progress (EXTEND_TIMEOUT_USEC): a run that stops
#: making progress still times out.
EXTEND_START_SECONDS = 30.0
#: The IDL thread goes round its loop at least once a second; the watchdog
#: is fed only while its last round is younger than this (or half the
#: watchdog interval, if that is longer).
IDL_STALL_SECONDS = 10.0

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 2


class _Stop(Exception):
    """Start-up was interrupted by SIGTERM."""


def setup_logging(debug: bool) -> None:
    """One line per event on stderr.  Under systemd (stderr is the journal
    stream) each line starts with its syslog priority, ``<3>`` for an error,
    so that ``journalctl -p err`` finds it, and carries no time or pid,
    which journald records itself; elsewhere (a foreground run, a file)
    the time, pid and level name lead the line."""
    handler = logging.StreamHandler(sys.stderr)
    formatter: logging.Formatter
    if systemd.stderr_is_journal():
        formatter = systemd.JournalFormatter()
    else:
        formatter = logging.Formatter(
            "%(asctime)s.%(msecs)03d %(process)d %(levelname)s %(name)s: %(message)s",
            datefmt="%Y-%m-%d %H:%M:%S",
        )
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    # uvicorn's own chatter ("Started server process", "Waiting for connections")
    # says nothing our log lines do not; keep its warnings and errors.
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
    for noisy in ("httpx", "httpcore", "pyroute2"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class Daemon:
    """One vifplugd process."""

    def __init__(self, conf_: cfg.ConfigOpts, settings: conf.Settings) -> None:
        self.conf = conf_
        self.settings = settings
        self.notifier = sdnotify.SystemdNotifier()
        self.engine: engine.Engine | None = None
        self.pusher: push.Pusher | None = None
        self.metrics = api_metrics.Metrics()
        self.servers: server.Servers | None = None
        self.executor: ThreadPoolExecutor | None = None
        self._stop_requested = threading.Event()
        self._stop_event: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reload_task: asyncio.Task[api_deps.ReloadOutcome] | None = None
        self._unix_inode: int | None = None
        #: Listening sockets by listener name (unix, tcp, metrics), bound or
        #: passed by systemd before the engine starts.
        self.sockets: dict[str, socket.socket] = {}
        self._ready = False

    # -- entry -----------------------------------------------------------------------
    def run(self) -> int:
        try:
            return asyncio.run(self._main())
        except server.ListenerError as exc:
            LOG.error("cannot start: %s", exc)
            return EXIT_CONFIG

    async def _main(self) -> int:
        loop = asyncio.get_running_loop()
        self._loop = loop
        # The loop's own pool (/metrics renders there): named like the others.
        loop.set_default_executor(
            ThreadPoolExecutor(
                thread_name_prefix="loop-executor", initializer=threadnames.name_this_thread
            )
        )
        self._stop_event = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_stop_signal, sig)
        loop.add_signal_handler(signal.SIGHUP, self._on_hup)
        tcp_plan = server.plan_tcp(self.settings.api)  # refuse early
        try:
            network_defs = networks.load(self.conf)
        except exceptions.VifplugError as exc:
            LOG.error("cannot start: the network definitions are invalid: %s", exc.message)
            return EXIT_CONFIG
        try:
            try:
                self._open_sockets(tcp_plan)
            except OSError as exc:
                LOG.error("cannot start the listeners: %s", exc)
                return EXIT_FAILURE
            return await self._run_engine(network_defs, tcp_plan)
        finally:
            for sock in self.sockets.values():
                sock.close()
            if self._unix_inode is not None:
                server.unlink_unix(self.settings.api.socket_path, self._unix_inode)

    async def _run_engine(
        self, network_defs: dict[str, networks.NetworkDef], tcp_plan: server.TcpPlan | None
    ) -> int:
        watchdog = asyncio.create_task(self._watchdog())
        try:
            self.engine = await self._start(network_defs)
        except _Stop:
            LOG.info("stopped during start-up")
            return EXIT_OK
        except exceptions.VifplugError as exc:
            LOG.error("cannot start: %s", exc.message)
            return EXIT_FAILURE
        except Exception:
            LOG.exception("cannot start")
            return EXIT_FAILURE
        try:
            return await self._serve(tcp_plan)
        finally:
            watchdog.cancel()
            await self._in_thread(self._shutdown_engine)

    # -- sockets ------------------------------------------------------------------------
    def _open_sockets(self, tcp_plan: server.TcpPlan | None) -> None:
        """The listening sockets, before the engine starts: those systemd
        passed (``vifplugd.socket``), else bound here.  Bound this early, a
        client that connects while OVSDB is awaited or the state reconciled
        waits in the listen queue instead of failing with ENOENT; its
        request is answered once the daemon serves (or refused by
        readiness-aware code paths as before)."""
        passed = self._passed_sockets()
        api = self.settings.api
        if "unix" in passed:
            self.sockets["unix"] = server.adopt(passed["unix"], name="unix", family=socket.AF_UNIX)
        else:
            self.sockets["unix"] = server.bind_unix(api.socket_path, group=api.socket_group)
            self._unix_inode = os.stat(api.socket_path).st_ino
        if "tcp" in passed:
            if tcp_plan is None:
                raise server.ListenerError(
                    "systemd passed a socket named 'tcp' but [api] listen is not set; set it "
                    "(its TLS and token settings apply) or remove the TCP ListenStream="
                )
            self.sockets["tcp"] = server.adopt(passed["tcp"], name="tcp", family=socket.AF_INET)
        elif tcp_plan is not None:
            self.sockets["tcp"] = server.bind_tcp(tcp_plan)
        metrics = self.settings.metrics
        if "metrics" in passed:
            self.sockets["metrics"] = server.adopt(
                passed["metrics"], name="metrics", family=socket.AF_INET
            )
        elif metrics.port is not None:
            plan = server.TcpPlan(host=metrics.address, port=metrics.port, tls=False, token=None)
            self.sockets["metrics"] = server.bind_tcp(plan, option="[metrics] address/port")

    def _passed_sockets(self) -> dict[str, socket.socket]:
        """What systemd passed, by name; a single unnamed socket is the unix
        API socket (the CONTRACT: ``vifplugd.socket`` with one ListenStream=)."""
        try:
            passed = systemd.listen_fds()
        except ValueError as exc:
            raise server.ListenerError(f"the sockets systemd passed are unusable: {exc}") from None
        if len(passed) == 1 and passed[0].name not in ("unix", "tcp", "metrics"):
            passed = [systemd.Passed(name="unix", sock=passed[0].sock)]
        by_name: dict[str, socket.socket] = {}
        for p in passed:
            if p.name not in ("unix", "tcp", "metrics") or p.name in by_name:
                for q in passed:
                    q.sock.close()
                raise server.ListenerError(
                    f"systemd passed a socket named {p.name!r}; vifplugd takes one each of "
                    "'unix', 'tcp' and 'metrics' (FileDescriptorName= in vifplugd.socket)"
                )
            by_name[p.name] = p.sock
        if by_name:
            LOG.info("sockets passed by systemd: %s", ", ".join(sorted(by_name)))
        return by_name

    # -- systemd ------------------------------------------------------------------------
    def _notify(self, *lines: str) -> None:
        """One sd_notify datagram (sdnotify ignores a missing NOTIFY_SOCKET)."""
        self.notifier.notify("\n".join(lines))

    def _status(self, text: str) -> None:
        self._notify(f"STATUS={text}")

    def _on_progress(self, done: int, total: int) -> None:
        """Reconciliation's progress (its threads): STATUS=, and while
        starting, more time to start, since it is moving."""
        if total == 0:
            return
        lines = [f"STATUS=Reconciling: {done}/{total} VIF(s) done"]
        if not self._ready:
            lines.append(f"EXTEND_TIMEOUT_USEC={int(EXTEND_START_SECONDS * 1e6)}")
        self._notify(*lines)

    def _vital(self) -> str | None:
        """Why the watchdog must not be fed (a thread that matters is stuck or
        dead), or None.  Before the engine runs, start-up is bounded by
        TimeoutStartSec and the loop answering is enough."""
        eng = self.engine
        interval = systemd.watchdog_seconds() or 0.0
        if eng is None or eng.ovsdb is None or eng.store is None:
            return None
        stalled = time.monotonic() - eng.ovsdb.loop_beat
        if stalled > max(IDL_STALL_SECONDS, interval / 2):
            return f"the OVSDB IDL thread has not gone round its loop for {stalled:.0f}s"
        if not eng.store.writer_alive and not self._stop_requested.is_set():
            return "the state writer thread stopped"
        return None

    async def _watchdog(self) -> None:
        """``WATCHDOG=1`` every third of ``WatchdogSec=`` while the threads
        that matter are alive (this loop answering is the event loop's
        witness), so that systemd restarts a daemon whose IDL thread hung."""
        interval = systemd.watchdog_seconds()
        if interval is None:
            return
        warned = False
        while True:
            why = self._vital()
            if why is None:
                self._notify("WATCHDOG=1")
                warned = False
            elif not warned:
                LOG.error("not feeding the systemd watchdog: %s", why)
                self._status(f"Stuck: {why}")
                warned = True
            await asyncio.sleep(interval / 3)

    async def _in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run blocking start-up/shutdown work in a daemon thread, so the loop
        keeps handling signals, and a stuck OVSDB never keeps the process
        alive after SIGTERM (the loop's default executor would be joined)."""
        assert self._loop is not None
        future: asyncio.Future[Any] = self._loop.create_future()

        loop = self._loop

        def target() -> None:
            try:
                result = fn(*args)
            except BaseException as exc:  # handed to the awaiting coroutine
                loop.call_soon_threadsafe(_settle, future, None, exc)
            else:
                loop.call_soon_threadsafe(_settle, future, result, None)

        threadnames.Thread(target=target, name=f"vifplugd-{fn.__name__}", daemon=True).start()
        return await future

    # -- start-up -------------------------------------------------------------------------
    async def _start(self, network_defs: dict[str, networks.NetworkDef]) -> engine.Engine:
        """The engine, started; ``_Stop`` when SIGTERM came first.  A start-up
        step blocked on OVSDB gets a few seconds to notice, then is abandoned."""
        assert self._stop_event is not None
        starting = asyncio.ensure_future(self._in_thread(self._start_engine, network_defs))
        stopping = asyncio.ensure_future(self._stop_event.wait())
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not starting.done():
            try:
                await asyncio.wait_for(asyncio.shield(starting), ABANDON_START_SECONDS)
            except TimeoutError:
                LOG.warning("start-up is blocked; exiting without waiting for it")
                raise _Stop from None
        eng: engine.Engine = starting.result()
        return eng

    def _start_engine(self, network_defs: dict[str, networks.NetworkDef]) -> engine.Engine:
        """Start the engine, retrying while OVSDB does not answer (systemd's start
        timeout bounds how long; SIGTERM interrupts)."""
        attempt = 0
        remote = self.settings.ovs.connection
        while True:
            if self._stop_requested.is_set():
                raise _Stop
            attempt += 1
            self._status(
                f"Connecting to OVSDB at {remote}, then reconciling the state"
                if attempt == 1
                else f"Waiting for OVSDB at {remote} (attempt {attempt})"
            )
            eng = engine.Engine(
                self.settings,
                network_defs=network_defs,
                owner=self.settings.host.owner,
                on_commit=self.metrics.observe_commit,
                on_progress=self._on_progress,
            )
            try:
                eng.start()
            except exceptions.OvsdbUnavailable as exc:
                eng.stop()
                self._status(f"Waiting for OVSDB at {remote}: {exc.message}")
                LOG.warning(
                    "OVSDB does not answer (%s); retrying in %.0fs",
                    exc.message,
                    START_RETRY_SECONDS,
                )
                if self._stop_requested.wait(START_RETRY_SECONDS):
                    raise _Stop from None
                continue
            except BaseException:
                eng.stop()
                raise
            if self._stop_requested.is_set():
                eng.stop()
                raise _Stop
            assert eng.ovsdb is not None
            LOG.info(
                "OVSDB connected at %s, system-id %s, state loaded and reconciled",
                eng.ovsdb.remote,
                eng.system_id,
            )
            return eng

    def _runtime(self, eng: engine.Engine) -> api_app.Runtime:
        api = self.settings.api
        self.executor = ThreadPoolExecutor(
            max_workers=api.workers,
            thread_name_prefix="api-worker",
            initializer=threadnames.name_this_thread,
        )
        reconciler = eng.reconciler
        assert reconciler is not None
        self.metrics.watch_engine(eng, ready=lambda: self.readiness()[0])
        return api_app.Runtime(
            executor=self.executor,
            metrics=self.metrics,
            readiness=self.readiness,
            max_body_bytes=api.max_body_bytes,
            reconciler=reconciler,
            reload=self.reload_now,
        )

    def _listeners(
        self, eng: engine.Engine, rt: api_app.Runtime, tcp_plan: server.TcpPlan | None
    ) -> list[server.Listener]:
        api = self.settings.api
        limits = server.limits(api)
        listeners = []
        unix_sock = self.sockets["unix"]
        listeners.append(
            server.make_listener(
                "unix",
                api_app.create_app(eng.service, runtime=rt, listener="unix"),
                unix_sock,
                address=f"unix:{unix_sock.getsockname() or api.socket_path}",
                shutdown_timeout=api.shutdown_timeout,
                limits=limits,
            )
        )
        if "metrics" in self.sockets:
            sock = self.sockets["metrics"]
            listeners.append(
                server.make_listener(
                    "metrics",
                    scrape.ScrapeApp(self.metrics),
                    sock,
                    address=f"metrics {server.tcp_address(sock, tls=False)}/metrics",
                    shutdown_timeout=api.shutdown_timeout,
                    limits=limits,
                )
            )
        if tcp_plan is not None:
            tcp_sock = self.sockets["tcp"]
            address = server.tcp_address(tcp_sock, tls=tcp_plan.tls)
            listeners.append(
                server.make_listener(
                    "tcp",
                    api_app.create_app(
                        eng.service, runtime=rt, token=tcp_plan.token, listener="tcp"
                    ),
                    tcp_sock,
                    address=address,
                    shutdown_timeout=api.shutdown_timeout,
                    limits=limits,
                    plan=tcp_plan,
                )
            )
        return listeners

    async def _serve(self, tcp_plan: server.TcpPlan | None) -> int:
        eng = self.engine
        assert eng is not None
        rt = self._runtime(eng)
        try:
            listeners = self._listeners(eng, rt, tcp_plan)
        except server.ListenerError as exc:
            LOG.error("cannot start: %s", exc)
            return EXIT_CONFIG
        except OSError as exc:
            LOG.error("cannot start the listeners: %s", exc)
            return EXIT_FAILURE
        self.servers = server.Servers(listeners)
        serving = asyncio.create_task(self.servers.serve())
        while not self.servers.started and not serving.done():
            await asyncio.sleep(0.01)
        if serving.done():
            serving.result()  # raises what stopped the servers
            return EXIT_FAILURE
        for lst in listeners:
            LOG.info("listening on %s", lst.address)
        if self._stop_requested.is_set():
            self.servers.stop()
        else:
            self._notify("READY=1", f"STATUS={self._ready_status()}")
            LOG.info("vifplugd ready (pid %d)", os.getpid())
            self._ready = True  # after the announcement: /metrics reads it from a thread
            assert eng.service is not None
            self.pusher = push.Pusher(
                self.settings.network_manager,
                eng.service.host_info,
                on_result=lambda r: self.metrics.netmgr_pushes.labels(result=r).inc(),
            )
            self.pusher.start()
            self.pusher.trigger("start")
        await serving
        LOG.info("every request answered; stopping")
        return EXIT_OK

    def _ready_status(self) -> str:
        eng = self.engine
        vifs = len(eng.store.all()) if eng is not None and eng.store is not None else 0
        return f"Serving {vifs} VIF(s)"

    # -- readiness ------------------------------------------------------------------------
    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """``/readyz``: OVSDB connected, the state reconciled and writable, and
        the daemon's readiness announced (``READY=1``, ``vifplugd ready``)."""
        eng = self.engine
        details: dict[str, Any] = {}
        ovsdb_ok = bool(eng is not None and eng.ovsdb is not None and eng.ovsdb.connected)
        details["ovsdb"] = {
            "connected": ovsdb_ok,
            "remote": eng.ovsdb.remote if eng and eng.ovsdb else None,
        }
        reconciler = eng.reconciler if eng is not None else None
        last = reconciler.last if reconciler is not None else None
        details["reconciliation"] = {
            "runs": reconciler.runs if reconciler is not None else 0,
            "running": bool(reconciler is not None and reconciler.running),
            "summary": last.summary() if last is not None else None,
            "errors": list(last.errors) if last is not None else [],
        }
        guard = reconciler.guard if reconciler is not None else None
        details["leak_guard"] = {
            "held": bool(guard is not None and guard.held),
            "reason": guard.reason if guard is not None else None,
            "since": records.rfc3339(guard.since) if guard is not None else None,
            "ports": guard.ports if guard is not None else 0,
            "devices": guard.links if guard is not None else 0,
        }
        store = eng.store if eng is not None else None
        write_error = store.write_error if store is not None else None
        details["state"] = {"path": store.path if store else None, "write_error": write_error}
        details["system_id"] = eng.system_id if eng is not None else None
        details["network_manager"] = (
            self.pusher.status()
            if self.pusher is not None
            else {"state": "disabled" if not self.settings.network_manager.url else "pending"}
        )
        stopping = self._stop_requested.is_set()
        details["stopping"] = stopping
        engine_ready = bool(eng is not None and eng.is_ready)
        # Ready only once announced (READY=1 and its log line), so whoever
        # saw 200 here also finds the announcement: a listener can answer
        # before the others are open and the announcement is made.
        ready = engine_ready and self._ready and not stopping and write_error is None
        if not ready:
            details["reason"] = (
                "shutting down"
                if stopping
                else "OVSDB is not connected"
                if not ovsdb_ok
                else f"the state database cannot be written: {write_error}"
                if write_error is not None
                else "the state is not reconciled yet"
                if not engine_ready
                else "the daemon has not announced it is ready yet"
            )
        return ready, details

    # -- signals ----------------------------------------------------------------------------
    def _on_stop_signal(self, sig: int) -> None:
        if self._stop_requested.is_set():
            LOG.info("%s again; still finishing in-flight requests", signal.Signals(sig).name)
            return
        self._stop_requested.set()
        if self._stop_event is not None:
            self._stop_event.set()
        self._notify("STOPPING=1", "STATUS=Stopping: finishing in-flight requests")
        LOG.info(
            "%s received: no new connections; finishing in-flight requests",
            signal.Signals(sig).name,
        )
        if self.pusher is not None:
            self.pusher.stop(timeout=0)
        if self.servers is not None:
            self.servers.stop()

    def _on_hup(self) -> None:
        if self.engine is None or self._stop_requested.is_set():
            LOG.info("SIGHUP ignored: not running yet, or stopping")
            return
        if self._reload_task is not None and not self._reload_task.done():
            LOG.info("SIGHUP ignored: a reload is in progress")
            return
        self._start_reload("SIGHUP received")

    async def reload_now(self) -> api_deps.ReloadOutcome:
        """``POST /v1/reload``: the same reload as SIGHUP, answered when done;
        one already running is awaited instead of starting another."""
        if self.engine is None or self._stop_requested.is_set():
            raise exceptions.ReloadUnavailable(reason="it is not running yet, or it is stopping")
        task = self._reload_task
        if task is None or task.done():
            task = self._start_reload("reload requested")
        return await asyncio.shield(task)

    def _start_reload(self, why: str) -> asyncio.Task[api_deps.ReloadOutcome]:
        # systemd (Type=notify-reload, or Type=notify) holds the reload job
        # until READY=1; MONOTONIC_USEC ties RELOADING=1 to this reload.
        self._notify(
            "RELOADING=1",
            f"MONOTONIC_USEC={time.monotonic_ns() // 1000}",
            "STATUS=Reloading the network definitions",
        )
        LOG.info("%s: re-reading the network definitions", why)
        assert self._loop is not None
        task: asyncio.Task[api_deps.ReloadOutcome] = self._loop.create_task(
            self._in_thread(self._reload)
        )
        task.add_done_callback(self._reload_done)
        self._reload_task = task
        return task

    def _reload_done(self, task: asyncio.Task[api_deps.ReloadOutcome]) -> None:
        error = task.exception() if not task.cancelled() else None
        if isinstance(error, exceptions.ReloadFailed):
            LOG.error("reload: %s", error.context["reason"])
        elif error is not None:
            LOG.error("reload failed: %s", error)
        self._notify("READY=1", f"STATUS={self._ready_status()}")

    def _reload(self) -> api_deps.ReloadOutcome:
        """Re-read the files, apply the networks, push HostInfo again.

        A file that no longer parses, or networks that are invalid, leave the
        running definitions as they were: ``ReloadFailed`` says why."""
        eng = self.engine
        assert eng is not None
        if not self.conf.reload_config_files():
            raise exceptions.ReloadFailed(
                reason="the configuration files could not be read; keeping the "
                "current network definitions"
            )
        try:
            defs = networks.load(self.conf)
        except exceptions.VifplugError as exc:
            raise exceptions.ReloadFailed(
                reason=f"the network definitions are invalid ({exc.message}); "
                "keeping the current ones"
            ) from None
        refused: Sequence[str] = eng.reload_networks(defs)
        LOG.info(
            "reload: %d network(s) configured (%s)%s",
            len(defs),
            ", ".join(sorted(defs)) or "none",
            f"; kept {', '.join(refused)}, which still have VIFs" if refused else "",
        )
        if self.pusher is not None:
            self.pusher.trigger("SIGHUP")
        return api_deps.ReloadOutcome(networks=sorted(defs), kept=list(refused))

    # -- shutdown ---------------------------------------------------------------------------
    def _shutdown_engine(self) -> None:
        if self.pusher is not None:
            self.pusher.stop()
        if self.executor is not None:
            # uvicorn has waited for every in-flight request; nothing is left
            # running unless shutdown_timeout expired, and those threads end
            # with the process.
            self.executor.shutdown(wait=False, cancel_futures=True)
        if self.engine is not None:
            started = time.monotonic()
            self.engine.stop()
            LOG.info("engine stopped in %.2fs", time.monotonic() - started)


def _settle(future: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)


def parse_args(argv: Sequence[str]) -> tuple[cfg.ConfigOpts, conf.Settings]:
    """oslo.config handles ``--config-file``/``--config-dir``; errors exit 2."""
    conf_ = conf.make_conf(list(argv), version=__version__)
    return conf_, conf.Settings.from_conf(conf_)


def main(argv: Sequence[str] | None = None) -> int:
    """Console script ``vifplugd``."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        conf_, settings = parse_args(args)
    except (cfg.Error, ValueError) as exc:
        print(f"vifplugd: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    setup_logging(settings.host.debug)
    LOG.info("vifplugd starting (config files: %s)", ", ".join(conf_.config_file or []) or "none")
    return Daemon(conf_, settings).run()


if __name__ == "__main__":
    sys.exit(main())
