"""Every failure vifplug can report, each with one stable error code.

Exceptions carry their context as typed keyword attributes (which VIF, which
device, which bridge) instead of a pre-formatted string, so that the API layer
can put them in the error envelope's ``details`` and map the class to an HTTP
status in one table (``vifplug.api.errors``).  The message template is filled
with ``str.format`` from the same keywords; a missing keyword is a programming
error and fails loudly in tests rather than producing a half-formatted message.
"""

from __future__ import annotations

from typing import Any, ClassVar


class VifplugError(Exception):
    """Base of all vifplug errors.

    ``code`` is the snake_case identifier that goes on the wire;
    ``template`` is one sentence a person understands, filled from ``context``.
    """

    code: ClassVar[str] = "internal_error"
    template: ClassVar[str] = "An internal error occurred."

    def __init__(self, **context: Any) -> None:
        self.context: dict[str, Any] = context
        super().__init__(self.template.format(**context))

    @property
    def message(self) -> str:
        return str(self)

    def details(self) -> dict[str, Any]:
        """Context as JSON-safe values for the error envelope."""
        return {k: _json_safe(v) for k, v in self.context.items()}


def _json_safe(value: object) -> object:
    """Scalars and lists of scalars as they are; anything else as text."""
    if isinstance(value, int | float | bool | type(None)):
        return value
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return str(value)


# --- caller mistakes (4xx) ---------------------------------------------------


class InvalidRequest(VifplugError):
    code = "invalid_request"
    template = "The request is invalid: {reason}"


class InvalidObject(VifplugError):
    code = "invalid_object"
    template = "The {what} is not a valid os_vif object: {reason}"


class UnwritableValue(VifplugError):
    """A value no layer below could hold: a string with a NUL, an unpaired
    surrogate, a control character or a line separator, or a number OVSDB's
    64-bit integers (or JSON) cannot carry.  ``field`` is where it is
    (``vif.port_profile.interface_id``), ``problem`` what is wrong with it."""

    code = "unwritable_value"
    template = (
        "The field {field} {problem}, which cannot be written to OVSDB, the kernel or "
        "the state database."
    )


class UnsupportedVersion(VifplugError):
    code = "unsupported_version"
    template = (
        "{obj_name} version {version} is outside the range "
        "{min_version} to {max_version} that plugin {plugin} accepts."
    )


class NoMatchingPlugin(VifplugError):
    code = "no_matching_plugin"
    template = "No installed plugin is named {plugin_name}."


class UnsupportedVIFType(VifplugError):
    code = "unsupported_vif_type"
    template = "Plugin {plugin} cannot plug a {obj_name}."


class UnsupportedPortProfile(VifplugError):
    code = "unsupported_port_profile"
    template = "Plugin {plugin} does not support port profile {profile} on a {obj_name}."


class MissingPortProfile(VifplugError):
    """os-vif's ovs plugin refuses the same VIF (``MissingPortProfile``): without
    a profile there is no ``interface_id``, so OVN could never bind the port."""

    code = "missing_port_profile"
    template = (
        "Plugin {plugin} needs a port profile ({profile}) on {obj_name} {vif_id}, and it has none."
    )


class BridgeNotAllowed(VifplugError):
    code = "bridge_not_allowed"
    template = "VIF {vif_id} asks for bridge {bridge}, which is not in allowed_bridges."


class InvalidDeviceName(VifplugError):
    code = "invalid_device_name"
    template = "Device name {name!r} is invalid: {reason}"


class VersionNotAvailable(VifplugError):
    code = "version_not_available"
    template = (
        "{obj_name} cannot be produced at version {version}; "
        "this host serves {min_version} to {max_version}."
    )


class VIFNotFound(VifplugError):
    code = "vif_not_found"
    template = "No VIF with id {vif_id} is plugged on this host."


class VIFConflict(VifplugError):
    code = "vif_conflict"
    template = "VIF {vif_id} is already plugged with different content ({difference})."


class DeviceInUse(VifplugError):
    code = "device_in_use"
    template = "Device {device} already exists and belongs to something else: {reason}"


class TeamingMismatch(VifplugError):
    """A transient member whose persistent member cannot be its pair: not
    plugged as ``persistent``, another MAC (QEMU's virtio failover needs the
    same one on both)."""

    code = "teaming_mismatch"
    template = "VIF {vif_id} cannot be the transient member of VIF {peer_id}'s pair: {reason}."


class TeamingPeerNotPlugged(VifplugError):
    """The persistent member a transient member names is not plugged on this
    host (unknown, or still being plugged or unplugged): plug it first."""

    code = "teaming_peer_not_plugged"
    template = (
        "VIF {vif_id} names VIF {peer_id} as its persistent member, which is {state}; "
        "plug the persistent member first."
    )


class TeamingPeerTaken(VifplugError):
    code = "teaming_peer_taken"
    template = (
        "VIF {peer_id} already has transient member {other_id}; unplug it before "
        "pairing VIF {vif_id} with it."
    )


class TeamingMemberPlugged(VifplugError):
    """The persistent member of a pair is unplugged while its transient member
    is plugged: as in a migration, the transient member is released first."""

    code = "teaming_member_plugged"
    template = (
        "VIF {vif_id} is the persistent member of a failover pair whose transient "
        "member {peer_id} is still plugged; unplug {peer_id} first."
    )


class NetworkNotFound(VifplugError):
    code = "network_not_found"
    template = "VIF {vif_id} names network {network}, which is not configured on this host."


class PoolExhausted(VifplugError):
    code = "pool_exhausted"
    template = "Network {network} has no free device for VIF {vif_id} in {mode} mode."


class PhysicalDeviceNotFound(VifplugError):
    code = "physical_device_not_found"
    template = "Physical device {device} for VIF {vif_id} does not exist on this host."


class PurgeNotConfirmed(VifplugError):
    """A purge of leaks without the operator's explicit confirmation."""

    code = "purge_not_confirmed"
    template = (
        "Nothing was removed: a purge removes {ports} OVS port(s) and {devices} device(s) "
        'that running VMs may still use, and needs the body {{"confirm": true}}.'
    )


class Unauthorized(VifplugError):
    code = "unauthorized"
    template = "A valid bearer token is required."


# --- the system did not do what we asked (5xx) --------------------------------


class PlugTimeout(VifplugError):
    code = "plug_timeout"
    template = (
        "VIF {vif_id} is plugged as {device} but {condition} did not happen "
        "within {timeout} seconds ({seen}); it stays plugged and listed."
    )


class IfaceIdTaken(VifplugError):
    code = "iface_id_taken"
    template = (
        "VIF {vif_id} was made inactive while its plug waited for OVN: interface "
        "{taken_by} on this host now carries iface-id {iface_id}."
    )


class OvsdbUnavailable(VifplugError):
    code = "ovsdb_unavailable"
    template = "The OVSDB server at {remote} is not reachable: {reason}"


class OvsdbTransactionFailed(VifplugError):
    code = "ovsdb_transaction_failed"
    template = "The OVSDB transaction failed with status {status}: {reason}"


class OvsdbTimeout(VifplugError):
    code = "ovsdb_timeout"
    template = "The OVSDB server did not answer within {timeout} seconds."


class InterfaceError(VifplugError):
    code = "interface_error"
    template = "Open vSwitch could not attach {device} to {bridge}: {reason}"


class InterfaceGone(VifplugError):
    code = "interface_gone"
    template = (
        "The OVS interface {device} was removed while the plug waited for it "
        "(the VIF was unplugged meanwhile)."
    )


class NetdevError(VifplugError):
    code = "netdev_error"
    template = "The kernel refused {operation} on device {device}: {reason}"


class NotReady(VifplugError):
    code = "not_ready"
    template = "vifplugd is not ready yet: {reason}"


class ReloadFailed(VifplugError):
    code = "reload_failed"
    template = "The configuration was not reloaded ({reason}); the running one is kept."


class ReloadUnavailable(VifplugError):
    code = "reload_unavailable"
    template = "This daemon cannot reload now ({reason})."


class ShuttingDown(VifplugError):
    code = "shutting_down"
    template = "vifplugd is shutting down and takes no new requests."


# --- persistent state (vifplug.state) -----------------------------------------


class VIFLifecycleError(VifplugError):
    """The VIF exists but is in the wrong phase for the step asked of it."""

    code = "vif_lifecycle_conflict"
    template = "VIF {vif_id} is {lifecycle} on this host and cannot {operation} now."


class PoolDeviceTaken(VifplugError):
    """Another VIF holds the pool device and one of the two needs it alone."""

    code = "pool_device_taken"
    template = (
        "Device {device} of network {network} is held by VIF {holder} and cannot "
        "also serve VIF {vif_id} (passthrough and hostdev modes need a device alone)."
    )


class StateSchemaTooNew(VifplugError):
    """A newer vifplugd wrote the state; reading it could lose what it recorded."""

    code = "state_schema_too_new"
    template = (
        "The state database {path} has {what} {found}, newer than the {supported} "
        "this vifplugd understands; upgrade vifplugd instead of downgrading it."
    )


class StateUnavailable(VifplugError):
    """The state database cannot be opened, is not ours, or holds unreadable records."""

    code = "state_unavailable"
    template = "The state database {path} cannot be used: {reason}"


class ClonedSystemId(VifplugError):
    """The system-id was recorded on another machine: this host is a copy of it."""

    code = "cloned_system_id"
    template = (
        "The system-id {system_id} was recorded on the machine with machine-id "
        "{recorded_machine_id}, and this one is {machine_id} ({machine_id_file}): this host "
        "is a copy of another, and two hosts with one system-id make controllers fight "
        "over their ports; configure a new [DEFAULT] system_id, or set [DEFAULT] "
        "allow_cloned_system_id = true to keep this one."
    )


class StateWriteFailed(VifplugError):
    """A change was not acknowledged as durable: the caller must not rely on it.

    After a failed commit the store re-reads the database, so its reads show
    whether the change landed; the lifecycle columns let reconciliation sort
    out the rare commit whose outcome the disk left unknown.
    """

    code = "state_write_failed"
    template = "The state database {path} could not record the change: {reason}"
