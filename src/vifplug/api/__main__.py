"""``python -m vifplug.api``: print the OpenAPI document (kept in docs/openapi.json).

Regenerate after changing the API:
``python -m vifplug.api > docs/openapi.json``; a unit test fails while the
file is stale.
"""

from __future__ import annotations

import json
import sys
import warnings

# See vifplug.daemon: eventlet's deprecation warning comes with oslo's imports.
warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

from vifplug.api import app  # noqa: E402


def main() -> int:
    json.dump(app.openapi_document(), sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
