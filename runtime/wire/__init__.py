"""The wire: bytes and connections. Codec (envelopes, frames), the protocol parser and client,
transport (connect, error mapping, flush), the embedded nats-server, subjects, stream snapshots.
Imports nothing from the layers above it."""
