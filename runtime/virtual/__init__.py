"""Virtual actors across nodes: one activation per id, placed by rendezvous hashing over the
members (a KV heartbeat), owned under a fencing token (a KV record), deactivated when idle and
handed over in order when nodes come and go. See docs/virtual.md.

Modules: ``_config`` (VirtualConfig), ``_rendezvous`` (placement, pure), ``_membership``
(heartbeats, lease), ``_ownership`` (claims), ``_activator`` (one class on one node),
``_history`` (the activation record), ``_extension`` (``system.virtual``).
"""

from corps.virtual._config import VirtualConfig
from corps.virtual._extension import Virtual
from corps.virtual._history import Activation
from corps.virtual._rendezvous import owner

__all__ = ["Activation", "Virtual", "VirtualConfig", "owner"]
