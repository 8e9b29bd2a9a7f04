"""Pushing this host's HostInfo to the network manager (seed 004's negotiation).

When ``[network_manager] url`` is set, the daemon POSTs its HostInfo
primitive (JSON) there at start and after SIGHUP.  A manager with an older
os-vif may not read it; seed 004 says it then answers with an error naming
the newest HostInfo version it reads, and the host backlevels and retries.
This module does exactly that, in a thread of its own so that a slow or
absent manager never delays plugging:

* a refusal that names a version (``details.max_version`` in a JSON
  envelope, oslo's "Version X of Y is not supported, supported version is
  Z", or a message saying "maximum version 1.0"; ``refusal`` reads them) is
  answered at once with a HostInfo backlevelled to it (``hostinfo.backlevel``);
* when the manager names a HostInfo version we already sent, what it cannot
  read is inside (HostInfo has been 1.0 since os-vif 1.0, while HostVIFInfo
  became 1.1): the next attempt sends every object at its oldest version of
  the same major (``oldest_manifest``), which is what an os-vif of that era
  reads;
* anything else (connection refused, 5xx, a refusal without a version) is
  retried with exponential backoff (``tenacity``) until it succeeds, the
  configuration is reloaded, or the daemon stops.

Nothing here raises into the daemon; the outcome is ``status()``, which
``/readyz`` shows.

httpx is imported by the first push, not with this module: it is 5 MB of
the daemon's memory, which a host without a network manager to push to
need not carry.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import tenacity

from vifplug import conf, exceptions, records, threadnames
from vifplug.negotiation import hostinfo, refusal
from vifplug.objects import base as obj_base
from vifplug.objects import host_info as hi

if TYPE_CHECKING:
    import httpx

LOG = logging.getLogger(__name__)

DISABLED, PENDING, PUSHING, PUSHED, RETRYING, STOPPED = (
    "disabled",
    "pending",
    "pushing",
    "pushed",
    "retrying",
    "stopped",
)


class PushFailed(Exception):
    """One push attempt failed in a way that backlevelling cannot fix."""


def oldest_manifest() -> dict[str, str]:
    """Every object at the oldest version of its major (``X.0``): what an
    os-vif peer of HostInfo's first era reads.  ``backlevel`` ignores the
    entries for objects that cannot occur inside HostInfo."""
    return {name: obj_base.oldest_of_major(cls.VERSION) for name, cls in obj_base.classes().items()}


def _summary(response: httpx.Response) -> str:
    """The error a manager answered, in one line."""
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip().splitlines()
        return f"HTTP {response.status_code}: {text[0][:200] if text else '(empty body)'}"
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return f"HTTP {response.status_code}: {error['message'][:200]}"
    return f"HTTP {response.status_code}: {json.dumps(body)[:200]}"


class Pusher:
    """Sends HostInfo to the network manager from a background thread.

    ``host_info()`` returns this host's ``HostInfo`` object (called for every
    push, so a reload is reflected).  ``trigger()`` starts a fresh push and
    abandons one in progress; ``status()`` is safe to call from any thread.
    """

    def __init__(
        self,
        settings: conf.NetworkManagerSettings,
        host_info: Callable[[], hi.HostInfo],
        *,
        on_result: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = settings
        self._host_info = host_info
        self._on_result = on_result
        self._lock = threading.Lock()
        self._kick = threading.Event()
        self._interrupt = threading.Event()
        self._stopping = False
        self._generation = 0
        self._thread: threading.Thread | None = None
        self._status: dict[str, Any] = {
            "url": settings.url,
            "state": DISABLED if not settings.url else PENDING,
            "attempts": 0,
            "last_error": None,
            "pushed_version": None,
            "pushed_manifest": None,
            "pushed_at": None,
            "reason": None,
        }

    @property
    def enabled(self) -> bool:
        return bool(self.settings.url)

    # -- control (any thread) -----------------------------------------------------------
    def start(self) -> None:
        if not self.enabled or self._thread is not None:
            return
        self._thread = threadnames.Thread(target=self._run, name="netmgr-push", daemon=True)
        self._thread.start()

    def trigger(self, reason: str) -> None:
        """Push (again) now; a push in progress is abandoned for the new one."""
        if not self.enabled:
            return
        with self._lock:
            self._generation += 1
            self._update(state=PENDING, reason=reason, attempts=0)
            self._kick.set()
            self._interrupt.set()

    def stop(self, timeout: float = 5.0) -> None:
        with self._lock:
            self._stopping = True
            self._kick.set()
            self._interrupt.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self.enabled and self._status["state"] != PUSHED:
            self._update(state=STOPPED)

    def status(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._status)

    def _update(self, **changes: Any) -> None:
        # One dict.update: readers copy under the lock and never see half of it.
        self._status.update(changes)

    # -- the thread ------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            self._kick.wait()
            with self._lock:
                if self._stopping:
                    return
                generation = self._generation
                self._kick.clear()
                self._interrupt.clear()
            try:
                self._push_with_retries(generation)
            except Exception:  # the thread must survive anything
                LOG.exception("pushing HostInfo to %s failed unexpectedly", self.settings.url)

    def _sleep(self, seconds: float) -> None:
        """Backoff that a new trigger or stop() cuts short."""
        self._interrupt.wait(seconds)

    def _abandoned(self, generation: int) -> bool:
        return self._stopping or generation != self._generation

    def _push_with_retries(self, generation: int) -> None:
        s = self.settings

        def before_sleep(state: tenacity.RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome is not None else None
            delay = state.next_action.sleep if state.next_action is not None else 0.0
            self._update(state=RETRYING, last_error=str(error))
            LOG.warning(
                "pushing HostInfo to %s failed (%s); retrying in %.1fs", s.url, error, delay
            )

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(PushFailed),
            wait=tenacity.wait_exponential(
                multiplier=s.retry_initial, min=s.retry_initial, max=s.retry_max
            ),
            stop=lambda _state: self._abandoned(generation),
            sleep=self._sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    if self._abandoned(generation):
                        return
                    self._push_once(generation)
        except PushFailed:
            return  # abandoned (stopping or a newer push): the newer one reports

    def _push_once(self, generation: int) -> None:
        """One attempt, including the backlevelling exchanges it takes.

        Raises ``PushFailed`` for what only waiting can fix."""
        s = self.settings
        assert s.url is not None
        self._update(state=PUSHING, attempts=self._status["attempts"] + 1)
        info = self._host_info()
        version: str | None = None
        manifest: dict[str, str] | None = None
        tried: list[tuple[str | None, dict[str, str] | None]] = []
        import httpx  # here, not at the top: see the module's docstring

        with httpx.Client(verify=s.ca_file or True, timeout=s.timeout) as client:
            while not self._abandoned(generation):
                tried.append((version, manifest))
                try:
                    primitive = hostinfo.backlevel(info, version=version, manifest=manifest)
                except exceptions.VifplugError as exc:
                    raise PushFailed(
                        f"the network manager reads only versions this host "
                        f"cannot produce: {exc.message}"
                    ) from None
                response = self._post(client, primitive)
                if response.is_success:
                    self._succeeded(primitive, manifest)
                    return
                step = self._backlevel_step(response, primitive, version, manifest)
                if step is None or step in tried:
                    self._result("error")
                    raise PushFailed(_summary(response))
                version, manifest = step
                LOG.info(
                    "the network manager at %s refused HostInfo %s (%s); backlevelling "
                    "to HostInfo %s%s and retrying",
                    s.url,
                    primitive.get(obj_base.KEY_VERSION),
                    _summary(response),
                    version or primitive.get(obj_base.KEY_VERSION),
                    f" with manifest {manifest}" if manifest else "",
                )

    def _post(self, client: httpx.Client, primitive: Mapping[str, object]) -> httpx.Response:
        s = self.settings
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if s.token_file:
            try:
                with open(s.token_file, encoding="utf-8") as f:
                    headers["Authorization"] = f"Bearer {f.read().strip()}"
            except OSError as exc:
                self._result("error")
                raise PushFailed(
                    f"cannot read [network_manager] token_file: {exc.strerror}"
                ) from None
        import httpx  # imported by _push_once already

        try:
            return client.post(s.url or "", content=json.dumps(primitive), headers=headers)
        except httpx.HTTPError as exc:
            self._result("unreachable")
            raise PushFailed(f"{type(exc).__name__}: {exc}") from None

    @staticmethod
    def _backlevel_step(
        response: httpx.Response,
        sent: Mapping[str, object],
        version: str | None,
        manifest: dict[str, str] | None,
    ) -> tuple[str | None, dict[str, str] | None] | None:
        """What to send next after a refusal, or None when it names no version."""
        body = response.content
        sent_version = str(sent.get(obj_base.KEY_VERSION))
        peer_max = refusal.max_version_from_error(body)
        named = refusal.manifest_from_error(body)
        if peer_max is None and not named:
            return None
        try:
            next_version = refusal.backlevel_version_from_error(body, sent=sent_version)
        except exceptions.VersionNotAvailable:
            return None
        merged = dict(manifest or {})
        merged.update(named)
        if next_version is None and merged == (manifest or {}):
            # The manager reads the HostInfo version we sent but not what is in
            # it: send every object at its oldest version of the same major.
            merged = {**oldest_manifest(), **merged}
        return (next_version or version), (merged or None)

    def _succeeded(self, primitive: Mapping[str, object], manifest: dict[str, str] | None) -> None:
        version = primitive.get(obj_base.KEY_VERSION)
        self._update(
            state=PUSHED,
            last_error=None,
            pushed_version=version,
            pushed_manifest=manifest,
            pushed_at=records.rfc3339(time.time()),
        )
        self._result("pushed")
        LOG.info(
            "pushed HostInfo %s to the network manager at %s%s",
            version,
            self.settings.url,
            f" (backlevelled with manifest {manifest})" if manifest else "",
        )

    def _result(self, result: str) -> None:
        if self._on_result is not None:
            self._on_result(result)
