"""Small helpers shared by every test directory (importable as ``helpers``)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import uuid
from collections.abc import Iterator, Sequence


def unique(prefix: str) -> str:
    """A device or bridge name no other test (nor the host) uses; <= 15 bytes."""
    return (prefix + uuid.uuid4().hex)[:15]


@contextlib.contextmanager
def paused(pid: int | None) -> Iterator[None]:
    """The process stopped (SIGSTOP) inside the block, and always resumed."""
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


class Activation:
    """Start a program the way systemd's socket activation does: the given
    listening sockets at descriptors 3, 4, ... and ``LISTEN_FDS``,
    ``LISTEN_PID`` (the program's own pid: bash sets it, then execs) and
    ``LISTEN_FDNAMES`` in its environment.  The caller keeps its own
    descriptors, so the sockets outlive the program, as they outlive a
    service under systemd: start another program on them and clients that
    connected meanwhile are answered by it.

    ``prefix(names)`` is the command to put before the program's argv;
    ``pass_fds`` goes to ``subprocess.Popen``; ``close()`` when done."""

    HIGH = 200  # the copies' descriptors start here, above anything dup2 overwrites

    def __init__(self, socks: Sequence[socket.socket]) -> None:
        self.copies = [
            fcntl.fcntl(s.fileno(), fcntl.F_DUPFD, self.HIGH + i) for i, s in enumerate(socks)
        ]

    @property
    def pass_fds(self) -> tuple[int, ...]:
        return tuple(self.copies)

    def prefix(self, names: Sequence[str] | None = None, *, pid: str = "$$") -> list[str]:
        moves = " ".join(f"{3 + i}<&{fd} {fd}<&-" for i, fd in enumerate(self.copies))
        env = f"LISTEN_FDS={len(self.copies)} LISTEN_PID={pid}"
        if names is not None:
            env += f" LISTEN_FDNAMES={':'.join(names)}"
        return ["bash", "-c", f'exec {moves}; export {env}; exec "$@"', "activate"]

    def close(self) -> None:
        for fd in self.copies:
            os.close(fd)
        self.copies = []
