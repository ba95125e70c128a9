"""The fault suite: corps nodes as OS processes, real nats-servers, real signals (docs/reliability.md)."""
