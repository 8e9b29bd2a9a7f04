"""The daemon's threads by name for the kernel, so that ``top -H`` and
``ps -L`` tell them apart.

Python 3.11 names a thread only for itself: the kernel sees every thread
of vifplugd under the process's name, and an operator asking which part
of the daemon uses a core (the API workers, the event loop, the OVSDB
thread, the state writer) could not tell.  ``bench/`` reads the same names
from ``/proc/PID/task/*/comm`` to split vifplugd's CPU by thread.  The
kernel keeps 15 bytes of a name; the rest is cut.
"""

from __future__ import annotations

import threading

import setproctitle


def name_this_thread() -> None:
    """Give the calling thread's Python name to the kernel (a pool's
    ``initializer``).  Never raises: a name is worth less than the thread."""
    try:
        setproctitle.setthreadtitle(threading.current_thread().name)
    except Exception:  # a missing name must not stop a thread
        return


class Thread(threading.Thread):
    """A ``threading.Thread`` that names itself for the kernel as it starts."""

    def run(self) -> None:
        name_this_thread()
        super().run()
