"""The user-facing composition: ``ActorSystem`` (the core Node with events and sagas attached)
and ``Actor`` (the core actor with ``@on_event`` and ``publish``). Re-exported by ``corps``."""
