"""The per-thread rtnetlink socket, and the one place kernel errors are translated.

Why one socket per thread: a look-up on a reused ``IPRoute`` costs about
0.25 ms, and a pyroute2 socket keeps per-thread state (its event loop and
transport live in a ``threading.local``), so sharing one between threads is
unsafe.  Each thread therefore gets its own ``IPRoute``, created on first use
and kept for the life of the thread.  It joins no multicast group: it only
sends requests and reads their answers, so nothing unread piles up in it.

Why translate here: the layers above must not know ``NetlinkError`` or errno
numbers.  Every kernel call in ``vifplug.netdev`` runs inside
:func:`kernel_call`, which turns ``NetlinkError``/``OSError`` into the
``vifplug.exceptions`` class the API layer maps to an HTTP status.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import threading
from collections.abc import Iterator
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from vifplug import exceptions

_local = threading.local()


def ipr() -> Any:
    """This thread's ``IPRoute``, created on first use and then reused.

    Blocking: must not be called from a thread running an asyncio loop (a
    sync ``IPRoute`` drives its own loop and would fail with "This event loop
    is already running"); call netdev through ``asyncio.to_thread``.
    """
    sock = getattr(_local, "ipr", None)
    if sock is None:
        _refuse_event_loop_thread()
        sock = IPRoute(groups=0)
        _local.ipr = sock
    return sock


def _refuse_event_loop_thread() -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError(
        "vifplug.netdev blocks; call it from a worker thread "
        "(asyncio.to_thread), not from the event loop"
    )


def close_thread_socket() -> None:
    """Close this thread's socket, if it has one.

    Threads that end (the deleter, a test's workers) call this so the socket,
    its event loop and file descriptors go away at once instead of at garbage
    collection with a ``ResourceWarning``.  Idempotent; a later call to any
    netdev function simply opens a new socket.
    """
    sock = getattr(_local, "ipr", None)
    if sock is not None:
        del _local.ipr
        sock.close()


def errno_of(err: BaseException) -> int | None:
    """The errno carried by a ``NetlinkError`` or ``OSError``."""
    if isinstance(err, NetlinkError):
        code = err.code
        return int(code) if code is not None else None
    if isinstance(err, OSError):
        return err.errno
    return None


def caused_by(err: BaseException, *codes: int) -> bool:
    """Whether a translated error came from a kernel error with one of ``codes``."""
    cause = err.__cause__
    return cause is not None and errno_of(cause) in codes


def translate(err: BaseException, *, operation: str, device: str) -> exceptions.VifplugError:
    """Map a kernel error to the vifplug exception the caller can act on."""
    code = errno_of(err)
    if code == errno.EEXIST:
        return exceptions.DeviceInUse(
            device=device, reason=f"a device of that name already exists ({operation})"
        )
    if code == errno.EBUSY:
        return exceptions.DeviceInUse(
            device=device, reason=f"the kernel reports it busy during {operation}"
        )
    if code in (errno.EPERM, errno.EACCES):
        reason = "permission denied; vifplugd needs CAP_NET_ADMIN"
    elif code == errno.ENODEV:
        reason = "no such device (it does not exist or vanished meanwhile)"
    elif code is not None:
        reason = f"{os.strerror(code)} ({errno.errorcode.get(code, code)})"
    else:
        reason = str(err)
    return exceptions.NetdevError(operation=operation, device=device, reason=reason)


@contextlib.contextmanager
def kernel_call(operation: str, device: str) -> Iterator[None]:
    """Run kernel calls, raising a vifplug exception instead of a kernel one.

    Anything else escaping from pyroute2 (a parser error, a timeout) may
    leave the socket with a half-read answer, so this thread's socket is
    dropped and the next call starts on a fresh one.
    """
    try:
        yield
    except (NetlinkError, OSError) as err:
        raise translate(err, operation=operation, device=device) from err
    except exceptions.VifplugError:
        raise
    except Exception:
        with contextlib.suppress(Exception):  # a broken socket may fail to close
            close_thread_socket()
        raise
