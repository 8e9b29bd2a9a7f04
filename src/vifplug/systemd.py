"""What systemd hands a service, read by the standard protocols.

* Socket activation (``sd_listen_fds(3)``): ``LISTEN_PID`` must be this
  process (the variables are inherited by children that are not meant to
  take the sockets), ``LISTEN_FDS`` descriptors start at 3, and
  ``LISTEN_FDNAMES`` (colon-separated, from ``FileDescriptorName=``) tells
  them apart.  The variables are unset once read, as
  ``sd_listen_fds(unset_environment=1)`` does, so nothing the daemon starts
  believes the sockets are its own.
* The watchdog (``sd_watchdog_enabled(3)``): ``WATCHDOG_USEC``, for this
  process when ``WATCHDOG_PID`` says so or is absent.
* The journal (``sd_journal_stream_fd(3)``, ``systemd.exec(5)``): stderr is
  connected to journald when ``JOURNAL_STREAM``'s ``device:inode`` is
  stderr's own; a line that starts with ``<N>`` then gets priority N.

Why not ``systemd-python``: it has no wheels and builds against
libsystemd's headers with a compiler; these protocols are a few lines each.
Notification itself (``sd_notify``) goes through ``sdnotify``.
"""

from __future__ import annotations

import dataclasses
import fcntl
import logging
import os
import socket

#: The first passed descriptor (``SD_LISTEN_FDS_START``).
LISTEN_FDS_START = 3

#: syslog priorities by logging level (``sd-daemon.h``'s ``SD_ERR`` etc.).
_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


@dataclasses.dataclass(frozen=True)
class Passed:
    """One socket systemd passed; ``name`` is its ``FileDescriptorName=``
    (systemd's default, the socket unit's name, when none was set)."""

    name: str
    sock: socket.socket


def listen_fds(environ: dict[str, str] | None = None, *, unset: bool = True) -> list[Passed]:
    """The sockets passed to this process, in order; [] when none were.

    ``environ`` is ``os.environ`` by default (tests pass their own).  Passed
    descriptors are marked close-on-exec, as ``sd_listen_fds`` does.
    Raises ``ValueError`` when the variables are malformed."""
    env = os.environ if environ is None else environ
    pid_text = env.get("LISTEN_PID")
    fds_text = env.get("LISTEN_FDS")
    names_text = env.get("LISTEN_FDNAMES")
    if unset:
        for key in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
            env.pop(key, None)
    if pid_text is None or fds_text is None:
        return []
    try:
        pid, count = int(pid_text), int(fds_text)
    except ValueError:
        raise ValueError(
            f"LISTEN_PID={pid_text!r} LISTEN_FDS={fds_text!r} are not numbers"
        ) from None
    if pid != os.getpid():
        return []  # meant for the process that started us
    if count < 0:
        raise ValueError(f"LISTEN_FDS={count} is negative")
    names = names_text.split(":") if names_text else []
    passed = []
    for i in range(count):
        fd = LISTEN_FDS_START + i
        flags = fcntl.fcntl(fd, fcntl.F_GETFD)
        fcntl.fcntl(fd, fcntl.F_SETFD, flags | fcntl.FD_CLOEXEC)
        name = names[i] if i < len(names) and names[i] else "unknown"
        passed.append(Passed(name=name, sock=socket.socket(fileno=fd)))
    return passed


def watchdog_seconds(environ: dict[str, str] | None = None) -> float | None:
    """The watchdog interval systemd expects pings within, or None when off."""
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC")
    pid = env.get("WATCHDOG_PID")
    if usec is None or (pid is not None and pid != str(os.getpid())):
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 1e6 if value > 0 else None


def stderr_is_journal(environ: dict[str, str] | None = None) -> bool:
    """Whether stderr is the journal stream systemd connected (not merely
    inherited by a process whose stderr was redirected elsewhere)."""
    env = os.environ if environ is None else environ
    device, sep, inode = env.get("JOURNAL_STREAM", "").partition(":")
    if not sep:
        return False
    try:
        st = os.fstat(2)
    except OSError:
        return False
    return f"{st.st_dev}:{st.st_ino}" == f"{device}:{inode}"


def priority(levelno: int) -> int:
    """The syslog priority of a logging level (between the named ones: the
    next more severe one, so a custom level never reads as less urgent)."""
    for level in sorted(_PRIORITY):
        if levelno <= level:
            return _PRIORITY[level]
    return _PRIORITY[logging.CRITICAL]


class JournalFormatter(logging.Formatter):
    """``<N>logger: message``: journald keeps the time, pid and unit itself,
    and reads ``<N>`` as the line's priority.  Every line of a multi-line
    record (a traceback) carries it, since journald splits the stream into
    lines."""

    def __init__(self) -> None:
        super().__init__("%(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{priority(record.levelno)}>"
        return "\n".join(prefix + line for line in super().format(record).split("\n"))
