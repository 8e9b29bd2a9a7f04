"""Kernel device names: what the kernel accepts, and how VIF devices are named.

Names are checked before any system call, so a bad name is refused with
``InvalidDeviceName`` and nothing is created.  The rules are the kernel's own
(``dev_valid_name``, and ``all`` and ``default``, which the kernel keeps
for the ``/proc/sys/net/ipv{4,6}/conf`` entries of every device and of new
ones: registering a device under either fails with EINVAL) plus one of ours:
``%`` is refused because the kernel treats ``%d`` in a new name as a
template and would pick another name.
"""

from __future__ import annotations

from vifplug import exceptions

IFNAMSIZ = 16
"""Kernel buffer for a device name, including the terminating NUL."""

MAX_NAME_BYTES = IFNAMSIZ - 1

RESERVED = frozenset({".", "..", "all", "default"})
"""Names the kernel never gives a device (``dev_valid_name``, ``sysctl_dev_name_is_allowed``)."""

NIC_NAME_LEN = 14
"""Length nova and os-vif cut derived names to ("tap" + VIF id)."""


def validate_name(name: str) -> None:
    """Refuse a name the kernel would reject or rewrite.

    Raises ``InvalidDeviceName`` when the name is empty, longer than 15 bytes
    (UTF-8), ``.``, ``..``, ``all`` or ``default``, or contains ``/``, ``:``, ``%``, whitespace or a
    control character.  Returns ``None`` when the name is usable.
    """

    def bad(reason: str) -> exceptions.InvalidDeviceName:
        return exceptions.InvalidDeviceName(name=name, reason=reason)

    if not isinstance(name, str) or not name:
        raise bad("it is empty")
    size = len(name.encode("utf-8"))
    if size > MAX_NAME_BYTES:
        raise bad(f"it is {size} bytes long; the kernel allows at most {MAX_NAME_BYTES}")
    if name in RESERVED:
        raise bad("the kernel reserves '.', '..', 'all' and 'default'")
    for char in name:
        if char in "/:":
            raise bad(f"it contains {char!r}")
        if char == "%":
            raise bad("it contains '%', which the kernel treats as a name template")
        if char.isspace():
            raise bad("it contains whitespace")
        if not char.isprintable():
            raise bad("it contains a control character")


def derive_name(prefix: str, vif_id: str, maxlen: int = NIC_NAME_LEN) -> str:
    """The device name nova and os-vif give a VIF: ``(prefix + vif_id)[:maxlen]``.

    With the default length of 14 this is exactly nova's ``tap`` + VIF id (and
    os-vif's ``qvb``/``qvo``/``qbr`` names), so a host converted from os-vif
    keeps its device names.  The result is validated; ``InvalidDeviceName``
    is raised if the prefix or id make it unusable.
    """
    if not 1 <= maxlen <= MAX_NAME_BYTES:
        raise ValueError(f"maxlen must be between 1 and {MAX_NAME_BYTES}, not {maxlen}")
    name = (prefix + vif_id)[:maxlen]
    # Cut by bytes as well, in case the id has multi-byte characters.
    while len(name.encode("utf-8")) > maxlen:
        name = name[:-1]
    validate_name(name)
    return name
