"""CPU seconds of the nats-server the bench started (``/proc``, Linux): the third party of every
saga, whose share decides the machine's ceiling in sagas per second."""

from __future__ import annotations

import os
from pathlib import Path


def server_cpu() -> float | None:
    """CPU seconds (user + system) used so far by the nats-server processes that are children of
    this process; None when there is none to read (``--nats`` given, or no ``/proc``)."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    me, total, found = os.getpid(), 0, False
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # gone meanwhile, or not ours to read
        name, _, rest = text.partition(") ")
        fields = rest.split()
        if name.endswith("(nats-server") and len(fields) > 12 and fields[1] == str(me):
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
            found = True
    return total / tick if found else None


def cores() -> int:
    """Cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
