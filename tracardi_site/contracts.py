"""The message contract every app shares (docs/architecture.md, section 2).

Each message on a topic is JSON with `v` (this version) and `kind`. The producers
(tracking, workflows) and the consumers (storage, tracking's collector, workflows) import
the version from here, so none of them depends on another app's internals for it.
"""

from __future__ import annotations

# Raised when a message's shape changes incompatibly; a worker refuses other versions.
SCHEMA_VERSION = 1
