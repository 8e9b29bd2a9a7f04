"""Every configuration option of vifplugd, declared once.

The options are registered on a ``cfg.ConfigOpts`` that the daemon creates and
then turned into frozen settings dataclasses (``Settings.from_conf``) that are
passed down explicitly; no layer reads a global ``CONF``.  ``list_opts`` feeds
``oslo-config-generator --namespace vifplug`` for the sample file.

Every path, socket and name prefix is an option, so that two daemons (two
"hypervisors" on one machine, for migration tests) can coexist.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Sequence
from typing import Any

from oslo_config import cfg

DEFAULT_OPTS = [
    cfg.StrOpt(
        "state_dir",
        default="/var/lib/vifplug",
        help="Directory where vifplugd keeps its persistent state "
        "(the SQLite database of plugged VIFs and their allocations).",
    ),
    cfg.StrOpt(
        "system_id",
        default=None,
        help="This host's system-id in Open_vSwitch external_ids; when set, it wins. "
        "Unset: the one OVSDB has, else the one kept in the state database, else "
        "the one in system_id_file, else a generated UUID. The choice is kept in the "
        "state database and written to OVSDB at start.",
    ),
    cfg.StrOpt(
        "system_id_file",
        default="/etc/openvswitch/system-id.conf",
        help="File to read the system-id from when system_id is not set and neither "
        "OVSDB nor the state database has one.",
    ),
    cfg.StrOpt(
        "machine_id_file",
        default="/etc/machine-id",
        help="This machine's identity (systemd's machine-id), kept in the state beside "
        "the system-id: a system-id recorded beside another machine-id was made on "
        "another machine (the host is a copy of it), and vifplugd refuses to start "
        "with it. A missing or empty file disables the check.",
    ),
    cfg.BoolOpt(
        "allow_cloned_system_id",
        default=False,
        help="Start even though the system-id was recorded on another machine "
        "(machine_id_file differs), and adopt it as this machine's. Two hosts with "
        "one system-id make controllers such as OVN fight over their ports; the "
        "usual fix for a cloned host is a new [DEFAULT] system_id instead.",
    ),
    cfg.StrOpt(
        "system_type",
        default=None,
        help="Value for Open_vSwitch system_type (e.g. the host OS); unset leaves it.",
    ),
    cfg.StrOpt(
        "system_version",
        default=None,
        help="Value for Open_vSwitch system_version; unset leaves it.",
    ),
    cfg.BoolOpt(
        "enable_statistics",
        default=None,
        help="Set Open_vSwitch other_config:enable-statistics to this value; unset leaves it.",
    ),
    cfg.StrOpt(
        "owner",
        default="vifplugd",
        help="Value written into the vifplug-owner external_ids key of the "
        "interfaces this daemon makes; it only ever removes ports carrying "
        "its own value, so two daemons on one host must differ.",
    ),
    cfg.BoolOpt("debug", default=False, help="Log at DEBUG level instead of INFO."),
]

OVS_OPTS = [
    cfg.StrOpt(
        "connection",
        default="unix:/run/openvswitch/db.sock",
        help="OVSDB remote of the local ovsdb-server.",
    ),
    cfg.StrOpt(
        "datapath_type",
        default="system",
        choices=[
            ("system", "the kernel datapath (openvswitch.ko), as on most compute hosts"),
            ("netdev", "the userspace datapath of ovs-vswitchd (OVS-DPDK, or test sandboxes)"),
        ],
        help="Datapath type of the bridges vifplugd creates.",
    ),
    cfg.StrOpt("integration_bridge", default="br-int", help="Bridge for VIFs that name none."),
    cfg.ListOpt(
        "allowed_bridges",
        default=[],
        help="Bridges VIFs may be plugged into. Empty means the integration "
        "bridge and the bridges of configured networks; any other is refused.",
    ),
    cfg.StrOpt(
        "inactive_iface_id",
        default="auto",
        choices=[
            ("auto", "hide when Open_vSwitch external_ids:ovn-remote is set, else keep"),
            (
                "hide",
                "in external_ids:vifplug-iface-id, moved to external_ids:iface-id when the "
                "interface is activated, so that a controller binding ports by iface-id "
                "alone (OVN) never claims an inactive interface",
            ),
            ("keep", "in external_ids:iface-id, as the Open vSwitch IntegrationGuide says"),
        ],
        help="Where an inactive interface carries its iface-id.",
    ),
    cfg.FloatOpt(
        "timeout",
        default=30.0,
        min=0.1,
        help="Seconds to wait for an OVSDB transaction to be acknowledged.",
    ),
    cfg.IntOpt(
        "probe_interval",
        default=5000,
        min=0,
        help="OVSDB inactivity probe in milliseconds (0 disables).",
    ),
    cfg.IntOpt(
        "max_batch",
        default=2000,
        min=1,
        help="Most operations coalesced into one OVSDB transaction.",
    ),
    cfg.FloatOpt(
        "hold_max",
        default=0.2,
        min=0.0,
        help="Longest a batch waits for ovs-vswitchd to apply the previous one "
        "(cur_cfg), so that writes arriving meanwhile share a transaction.",
    ),
    cfg.FloatOpt(
        "gather_max",
        default=0.1,
        min=0.0,
        help="Longest a batch waits for plugs that are still creating their "
        "devices, so that a burst of plugs shares one transaction.",
    ),
    cfg.FloatOpt(
        "pace_max",
        default=0.05,
        min=0.0,
        help="Longest the batch after one ovs-vswitchd applied waits until as "
        "many writes are queued as that one carried (its callers, answered, come "
        "back together). 0 disables.",
    ),
]

RECONCILE_OPTS = [
    cfg.IntOpt(
        "max_leak_removal",
        default=8,
        min=0,
        help="Most leaked OVS ports, and most leaked devices, one reconciliation "
        "removes. A run that finds more removes none of them, says so (ERROR log, "
        "/readyz, metric) and waits for an operator's purge (vifplug purge-leaks).",
    ),
    cfg.FloatOpt(
        "max_leak_fraction",
        default=0.5,
        min=0.0,
        max=1.0,
        help="Largest share of the OVS ports (and of the devices) carrying this "
        "daemon's marks that one reconciliation removes as leaked. More, and it "
        "removes none of them: the state is more likely lost than the ports leaked.",
    ),
    cfg.StrOpt(
        "boot_id_file",
        default="/proc/sys/kernel/random/boot_id",
        help="File holding the kernel's boot id. A boot id other than the one kept "
        "in the state means the host rebooted: VIFs whose devices the reboot took "
        "are forgotten instead of recreated.",
    ),
]

NETDEV_OPTS = [
    cfg.IntOpt(
        "link_group",
        default=0x7669,
        min=1,
        max=2**31 - 1,
        help="Kernel link group of the devices vifplugd creates; it finds "
        "leaked devices by it. Give each daemon on a host its own.",
    ),
    cfg.IntOpt(
        "delete_group",
        default=0x766A,
        min=1,
        max=2**31 - 1,
        help="Link group devices are moved to just before a batch delete; "
        "must differ from link_group and be unique per daemon.",
    ),
    cfg.BoolOpt(
        "delete_aside",
        default=True,
        help="Unplug renames a tap aside (vpdel<ifindex>, in "
        "delete_group) and answers at once; a background thread deletes the "
        "delete group, so a burst of unplugs pays the kernel's cost of a "
        "group delete a few times instead of once per batch. False deletes "
        "every device before the unplug answers.",
    ),
    cfg.StrOpt(
        "tap_prefix",
        default="tap",
        help="Prefix of tap device names derived from the VIF id when the VIF has no vif_name.",
    ),
    cfg.StrOpt(
        "hybrid_bridge_prefix",
        default="qbr",
        help="Prefix of the per-VIF linux bridge of a hybrid (VIFBridge) plug.",
    ),
    cfg.StrOpt(
        "hybrid_veth_bridge_prefix",
        default="qvb",
        help="Prefix of the bridge end of a hybrid plug's veth pair.",
    ),
    cfg.StrOpt(
        "hybrid_veth_ovs_prefix",
        default="qvo",
        help="Prefix of the OVS end of a hybrid plug's veth pair.",
    ),
    cfg.StrOpt(
        "vhostuser_prefix",
        default="vhu",
        help="Prefix of the OVS port of a vhost-user VIF (OVS-DPDK).",
    ),
    cfg.StrOpt(
        "sysfs_root",
        default="/sys",
        help="Where sysfs is mounted: the hostdev and direct plugins find PCI devices "
        "and SR-IOV VFs under it (only read).",
    ),
    cfg.IntOpt(
        "default_mtu",
        default=None,
        min=68,
        max=65535,
        help="MTU for devices whose VIF network has none; unset leaves the kernel default.",
    ),
    cfg.StrOpt(
        "tap_owner",
        default=None,
        help="User (name or uid) that may open the taps vifplugd creates, e.g. the "
        "QEMU user (libvirt-qemu); unset: only root.",
    ),
    cfg.StrOpt(
        "tap_group",
        default=None,
        help="Group (name or gid) that may open the taps vifplugd creates; unset: no group.",
    ),
]

API_OPTS = [
    cfg.StrOpt(
        "socket_path",
        default="/run/vifplug/vifplug.sock",
        help="Unix socket the compute service talks to.",
    ),
    cfg.StrOpt(
        "socket_group",
        default=None,
        help="Group owning the unix socket (mode 0660); unset keeps the daemon's group.",
    ),
    cfg.StrOpt(
        "listen",
        default=None,
        help="host:port of the TCP listener for the network manager; unset disables it.",
    ),
    cfg.StrOpt("cert_file", default=None, help="TLS certificate of the TCP listener."),
    cfg.StrOpt("key_file", default=None, help="TLS private key of the TCP listener."),
    cfg.StrOpt(
        "ca_file",
        default=None,
        help="CA bundle; when set the TCP listener also requires client certificates.",
    ),
    cfg.StrOpt(
        "token_file", default=None, help="File holding the bearer token TCP clients must present."
    ),
    cfg.BoolOpt(
        "insecure",
        default=False,
        help="Allow the TCP listener without TLS and token. Only for tests.",
    ),
    cfg.IntOpt(
        "workers",
        default=256,
        min=1,
        help="Threads serving plug and unplug requests; concurrent requests "
        "are coalesced into shared OVSDB transactions.",
    ),
    cfg.IntOpt("max_body_bytes", default=1048576, min=1024, help="Largest request body accepted."),
    cfg.FloatOpt(
        "default_timeout",
        default=30.0,
        min=0.0,
        help="Seconds a plug waits for its condition when the request gives no timeout.",
    ),
    cfg.FloatOpt(
        "shutdown_timeout",
        default=60.0,
        min=0.0,
        help="Seconds SIGTERM waits for in-flight requests before exiting.",
    ),
    cfg.FloatOpt(
        "idle_timeout",
        default=5.0,
        min=0.1,
        help="Seconds a connection may stay silent, once opened or after an answer, "
        "before it is closed.",
    ),
    cfg.FloatOpt(
        "request_timeout",
        default=10.0,
        min=0.1,
        help="Seconds a client has to send a complete request (headers and body), from "
        "the connection's opening or the previous answer; a slower one gets 408 and is "
        "disconnected. No timer runs while the answer is computed.",
    ),
    cfg.FloatOpt(
        "tls_handshake_timeout",
        default=10.0,
        min=0.1,
        help="Seconds a TCP client has to complete its TLS handshake (and its TLS close).",
    ),
    cfg.IntOpt(
        "max_connections",
        default=512,
        min=1,
        help="Connections each listener keeps open at once (TLS handshakes included); "
        "one more is closed at once, and the refusals are logged with a count.",
    ),
]

METRICS_OPTS = [
    cfg.HostAddressOpt(
        "address",
        default="127.0.0.1",
        help="Address of the metrics listener (plain HTTP, GET /metrics only, no token); "
        "0.0.0.0 or :: to let a Prometheus elsewhere scrape it.",
    ),
    cfg.PortOpt(
        "port",
        default=None,
        help="TCP port of the metrics listener; unset disables it (unless systemd passes "
        "a socket named 'metrics'). 0 picks a free port, logged at start.",
    ),
]

NETWORK_MANAGER_OPTS = [
    cfg.StrOpt(
        "url", default=None, help="URL to POST this host's HostInfo to at start and after SIGHUP."
    ),
    cfg.StrOpt("ca_file", default=None, help="CA bundle to verify the network manager."),
    cfg.StrOpt(
        "token_file",
        default=None,
        help="File holding a bearer token to present to the network manager.",
    ),
    cfg.FloatOpt(
        "retry_initial",
        default=1.0,
        min=0.01,
        help="First delay in seconds before retrying a failed push.",
    ),
    cfg.FloatOpt(
        "retry_max", default=60.0, min=0.01, help="Longest delay in seconds between push retries."
    ),
    cfg.FloatOpt("timeout", default=10.0, min=0.1, help="Seconds to wait for one push."),
]

NETWORK_OPTS = [
    cfg.StrOpt(
        "type",
        default="ovs",
        choices=[
            ("ovs", "VIFs are plugged into the OVS bridge named by 'bridge'"),
            ("direct", "VIFs get a macvtap on one of the physical devices in 'devices'"),
        ],
        help="Kind of network, as libvirt's <forward mode=...>.",
    ),
    cfg.StrOpt("bridge", default=None, help="OVS bridge of an ovs network (created if missing)."),
    cfg.StrOpt(
        "bridge_id",
        default=None,
        help="external_ids:bridge-id of the bridge; default: the network name.",
    ),
    cfg.StrOpt("hwaddr", default=None, help="other_config:hwaddr of the bridge."),
    cfg.ListOpt("devices", default=[], help="Pool of physical devices of a direct network."),
    cfg.StrOpt(
        "mode",
        default="vepa",
        choices=[
            ("vepa", "all traffic goes out to the adjacent switch, even between VMs (802.1Qbg)"),
            ("bridge", "VMs on one device talk to each other directly, the rest goes out"),
            ("private", "like vepa, but VMs on one device never reach each other"),
            ("passthrough", "one VM takes the whole device (or an SR-IOV VF); one VIF a device"),
        ],
        help="macvtap mode of a direct network (libvirt's direct forward modes).",
    ),
    cfg.ListOpt(
        "portgroups",
        default=[],
        help="Portgroups of this network; each is a [portgroup:NETWORK:NAME] group.",
    ),
    cfg.StrOpt("default_portgroup", default=None, help="Portgroup used when a VIF names none."),
]

PORTGROUP_OPTS = [
    cfg.StrOpt(
        "virtualport_type",
        default=None,
        choices=[
            (None, "no virtual port profile"),
            ("802.1Qbg", "VSI discovery with manager_id, type_id, type_id_version, instance_id"),
            ("802.1Qbh", "a port profile named by profile_id (Cisco VN-Link)"),
            ("openvswitch", "an Open vSwitch port, with profile_id as its interface id"),
        ],
        help="Virtual port profile applied to VIFs in this portgroup.",
    ),
    cfg.IntOpt("manager_id", default=None, help="802.1Qbg manager id."),
    cfg.IntOpt("type_id", default=None, help="802.1Qbg type id."),
    cfg.IntOpt("type_id_version", default=None, help="802.1Qbg type id version."),
    cfg.StrOpt("instance_id", default=None, help="802.1Qbg instance id."),
    cfg.StrOpt("profile_id", default=None, help="802.1Qbh profile id or OVS profile id."),
    cfg.IntOpt(
        "inbound_average",
        default=None,
        min=0,
        help="Average rate of traffic into the VM in kilobytes per second.",
    ),
    cfg.IntOpt("inbound_burst", default=None, min=0, help="Inbound burst in kilobytes."),
    cfg.IntOpt(
        "outbound_average",
        default=None,
        min=0,
        help="Average rate of traffic out of the VM in kilobytes per second.",
    ),
    cfg.IntOpt("outbound_burst", default=None, min=0, help="Outbound burst in kilobytes."),
]

GROUPS: dict[str | None, list[cfg.Opt]] = {
    None: DEFAULT_OPTS,
    "ovs": OVS_OPTS,
    "netdev": NETDEV_OPTS,
    "reconcile": RECONCILE_OPTS,
    "api": API_OPTS,
    "metrics": METRICS_OPTS,
    "network_manager": NETWORK_MANAGER_OPTS,
}


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    """Options for oslo-config-generator (namespace ``vifplug``)."""
    out: list[tuple[str, list[cfg.Opt]]] = []
    for group, opts in GROUPS.items():
        out.append((group or "DEFAULT", list(opts)))
    out.append(("network:NAME", list(NETWORK_OPTS)))
    out.append(("portgroup:NETWORK:NAME", list(PORTGROUP_OPTS)))
    return out


def register_opts(conf: cfg.ConfigOpts) -> None:
    for group, opts in GROUPS.items():
        conf.register_opts(opts, group=group)


#: Read when the command line names no ``--config-file`` (and ``--config-dir``),
#: as OpenStack services read ``/etc/nova/nova.conf`` and ``nova.conf.d/``:
#: the drop-in directory's ``*.conf`` files (in name order) override the file.
#: Only the ones that exist: a host with no configuration runs on the defaults.
DEFAULT_CONFIG_FILES = ("/etc/vifplug/vifplug.conf",)
DEFAULT_CONFIG_DIRS = ("/etc/vifplug/vifplug.conf.d",)


def make_conf(
    args: Sequence[str] = (),
    *,
    config_files: Iterable[str] | None = None,
    config_dirs: Iterable[str] | None = None,
    version: str | None = None,
) -> cfg.ConfigOpts:
    """A fresh, parsed ConfigOpts: the daemon and tests each get their own.

    ``config_files`` / ``config_dirs`` replace the defaults (``None``: those of
    ``DEFAULT_CONFIG_FILES`` / ``DEFAULT_CONFIG_DIRS`` that exist), so a test
    passes ``()`` to read nothing of the host's ``/etc``.  ``--config-file``
    and ``--config-dir`` on the command line replace them in turn, each on its
    own, as in every oslo.config program.  ``version`` adds ``--version``."""
    files = _existing(DEFAULT_CONFIG_FILES) if config_files is None else list(config_files)
    dirs = _existing(DEFAULT_CONFIG_DIRS) if config_dirs is None else list(config_dirs)
    conf = cfg.ConfigOpts()
    register_opts(conf)
    conf(
        list(args),
        project="vifplug",
        prog="vifplugd",
        version=version,
        description="vifplugd: the host-side VIF plugging daemon. It reads "
        "/etc/vifplug/vifplug.conf and /etc/vifplug/vifplug.conf.d/*.conf unless "
        "--config-file or --config-dir say otherwise; SIGHUP re-reads the networks.",
        default_config_files=files,
        default_config_dirs=dirs,
    )
    return conf


def _existing(paths: Iterable[str]) -> list[str]:
    """oslo.config refuses a default file or directory that is missing."""
    return [p for p in paths if os.path.exists(p)]


@dataclasses.dataclass(frozen=True)
class OvsSettings:
    connection: str = "unix:/run/openvswitch/db.sock"
    datapath_type: str = "system"
    integration_bridge: str = "br-int"
    allowed_bridges: tuple[str, ...] = ()
    inactive_iface_id: str = "auto"
    timeout: float = 30.0
    probe_interval: int = 5000
    max_batch: int = 2000
    hold_max: float = 0.2
    gather_max: float = 0.1
    pace_max: float = 0.05


@dataclasses.dataclass(frozen=True)
class ReconcileSettings:
    max_leak_removal: int = 8
    max_leak_fraction: float = 0.5
    boot_id_file: str = "/proc/sys/kernel/random/boot_id"


@dataclasses.dataclass(frozen=True)
class NetdevSettings:
    link_group: int = 0x7669
    delete_group: int = 0x766A
    delete_aside: bool = True
    tap_prefix: str = "tap"
    hybrid_bridge_prefix: str = "qbr"
    hybrid_veth_bridge_prefix: str = "qvb"
    hybrid_veth_ovs_prefix: str = "qvo"
    vhostuser_prefix: str = "vhu"
    sysfs_root: str = "/sys"
    default_mtu: int | None = None
    tap_owner: int | None = None
    tap_group: int | None = None


def resolve_user(value: str | None) -> int | None:
    """A user name or uid as a uid; a clear error for one that does not exist."""
    if value is None or value == "":
        return None
    if value.isdigit():
        return int(value)
    import pwd

    try:
        return pwd.getpwnam(value).pw_uid
    except KeyError:
        raise ValueError(f"[netdev] tap_owner: no user {value!r} on this host") from None


def resolve_group(value: str | None) -> int | None:
    if value is None or value == "":
        return None
    if value.isdigit():
        return int(value)
    import grp

    try:
        return grp.getgrnam(value).gr_gid
    except KeyError:
        raise ValueError(f"[netdev] tap_group: no group {value!r} on this host") from None


@dataclasses.dataclass(frozen=True)
class HostSettings:
    state_dir: str = "/var/lib/vifplug"
    system_id: str | None = None
    system_id_file: str = "/etc/openvswitch/system-id.conf"
    machine_id_file: str = "/etc/machine-id"
    allow_cloned_system_id: bool = False
    system_type: str | None = None
    system_version: str | None = None
    enable_statistics: bool | None = None
    owner: str = "vifplugd"
    debug: bool = False


@dataclasses.dataclass(frozen=True)
class ApiSettings:
    socket_path: str = "/run/vifplug/vifplug.sock"
    socket_group: str | None = None
    listen: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    ca_file: str | None = None
    token_file: str | None = None
    insecure: bool = False
    workers: int = 256
    max_body_bytes: int = 1048576
    default_timeout: float = 30.0
    shutdown_timeout: float = 60.0
    idle_timeout: float = 5.0
    request_timeout: float = 10.0
    tls_handshake_timeout: float = 10.0
    max_connections: int = 512


@dataclasses.dataclass(frozen=True)
class MetricsSettings:
    address: str = "127.0.0.1"
    port: int | None = None


@dataclasses.dataclass(frozen=True)
class NetworkManagerSettings:
    url: str | None = None
    ca_file: str | None = None
    token_file: str | None = None
    retry_initial: float = 1.0
    retry_max: float = 60.0
    timeout: float = 10.0


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything the daemon was configured with, as plain typed values."""

    host: HostSettings = HostSettings()
    ovs: OvsSettings = OvsSettings()
    netdev: NetdevSettings = NetdevSettings()
    reconcile: ReconcileSettings = ReconcileSettings()
    api: ApiSettings = ApiSettings()
    metrics: MetricsSettings = MetricsSettings()
    network_manager: NetworkManagerSettings = NetworkManagerSettings()

    @classmethod
    def from_conf(cls, conf: cfg.ConfigOpts) -> Settings:
        def take(dc: Any, group: Any, **resolved: Any) -> Any:
            values = dict(resolved)
            for f in dataclasses.fields(dc):
                if f.name not in values:
                    v = getattr(group, f.name)
                    values[f.name] = tuple(v) if isinstance(v, list) else v
            return dc(**values)

        return cls(
            host=take(HostSettings, conf),
            ovs=take(OvsSettings, conf.ovs),
            netdev=take(
                NetdevSettings,
                conf.netdev,
                tap_owner=resolve_user(conf.netdev.tap_owner),
                tap_group=resolve_group(conf.netdev.tap_group),
            ),
            reconcile=take(ReconcileSettings, conf.reconcile),
            api=take(ApiSettings, conf.api),
            metrics=take(MetricsSettings, conf.metrics),
            network_manager=take(NetworkManagerSettings, conf.network_manager),
        )
