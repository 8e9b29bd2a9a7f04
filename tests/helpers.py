"""Small helpers shared by every test directory (importable as ``helpers``)."""

from __future__ import annotations

import uuid


def unique(prefix: str) -> str:
    """A device or bridge name no other test (nor the host) uses; <= 15 bytes."""
    return (prefix + uuid.uuid4().hex)[:15]
