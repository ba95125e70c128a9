"""The actor core: messages, handlers, the Actor base, hosting (mailboxes, intake, supervision),
asking (inbox, outbox, refs) and the Node that holds them. Events and sagas attach to a Node
through ``Node.extend`` (``_extension.py``); nothing here imports them."""
