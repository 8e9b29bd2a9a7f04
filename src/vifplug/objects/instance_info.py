"""InstanceInfo: which instance a VIF is plugged for.

vifplug writes the instance's UUID into the OVS Interface (``vm-id`` and
``vm-uuid``) and keeps the name and project for listings.
"""

from __future__ import annotations

from oslo_versionedobjects import fields

from vifplug.objects import base


@base.register
class InstanceInfo(base.VersionedObject):
    """The instance (virtual machine) a VIF belongs to."""

    # 1.0: initial version
    VERSION = "1.0"

    fields = {
        # The instance's UUID.
        "uuid": fields.UUIDField(),
        # The instance's name as the compute service knows it.
        "name": fields.StringField(),
        # The project (tenant) that owns the instance.
        "project_id": fields.StringField(),
    }

    uuid: str
    name: str
    project_id: str
