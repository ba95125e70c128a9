"""Virtual host processes of the tests (``tests.virtual.vnode``), set up one way everywhere.

``vnode(nodes, label, *args)`` is one host in a ``Nodes`` group (not started), writing what it
handled and its activation changes to ``{label}.jsonl`` in the group's folder. ``VHosts`` numbers
them (``{prefix}{i}``), each connected to its own server of ``urls`` first (a cluster), and reads
their histories back; ``started(VHosts, urls, workdir, prefix, n, *args)`` is a group of ``n`` of them,
started at once, killed at the end.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar

from tests.fault.procs import Node, Nodes
from tests.virtual.load import read_history


class VNode(Node):
    module = "tests.virtual.vnode"


def vnode(nodes: Nodes, label: str, *args: str, url: str | None = None) -> VNode:
    """Host ``label`` in ``nodes`` (on ``url``, else the group's), not started yet."""
    n = VNode(label, "host", ["--url", url or nodes.url, "--ns", nodes.ns,
                              "--out", str(nodes.workdir / f"{label}.jsonl"), *args], nodes.workdir, None)
    nodes.nodes.append(n)
    return n


class VHosts:
    """Numbered hosts of one test: ``add(i)`` is ``{prefix}{i}``, with the same ``args`` each."""

    def __init__(self, nodes: Nodes, urls: list[str], prefix: str, *args: str) -> None:
        self.nodes = nodes
        self.urls = urls
        self.prefix = prefix
        self.args = args
        self.procs: list[VNode] = []

    def add(self, i: int) -> VNode:
        k = i % len(self.urls)
        url = ",".join(self.urls[k:] + self.urls[:k])  # each on its own server first
        n = vnode(self.nodes, f"{self.prefix}{i}", *self.args, url=url)
        self.procs.append(n)
        return n

    def out(self, i: int) -> Path:
        return self.nodes.workdir / f"{self.prefix}{i}.jsonl"

    def history(self) -> tuple[list[list[object]], list[dict[str, object]]]:
        """What every host added so far handled, and its activation changes (``load.read_history``)."""
        return read_history([self.out(i) for i in range(len(self.procs))])


H = TypeVar("H", bound=VHosts)


@asynccontextmanager
async def started(kind: type[H], urls: list[str], workdir: Path, prefix: str, n: int, *args: str) -> AsyncIterator[H]:
    """``n`` hosts (a ``kind`` of ``VHosts``) in a fresh namespace, started at once; every one
    killed on leaving."""
    async with Nodes(urls[0], f"{prefix}{uuid.uuid4().hex[:8]}", workdir) as nodes:
        hosts = kind(nodes, urls, prefix, *args)
        await nodes.start(*(hosts.add(i) for i in range(n)))
        yield hosts
