"""The child process of the ``virtual-events`` benchmark: ``python -m corps.bench._events_host
--url URL --ns NS host|durable``. A module of its own, so that the actor classes run under their
importable names (``corps.bench.virtual_events``), never as copies in ``__main__``."""

from corps.bench.virtual_events import main

if __name__ == "__main__":
    main()
