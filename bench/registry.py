"""The scenario registry: where every scenario, today's and later ones, plugs in.

A scenario module registers a factory per scenario name; the factory gets ``quick`` and returns
the :class:`~corps.bench._model.Scenario` (its parameters sized for a full or a ``--quick`` run)::

    from corps.bench.registry import register

    @register("events-consume")
    def events_consume(quick: bool) -> Scenario:
        return Scenario("events-consume", "...", {...}, variants, rows)

The command imports every module in :data:`PLUGINS` that exists (a missing one is skipped, a
broken one is reported on stderr and skipped), so a new module only needs its name here. A module
that instead defines ``scenarios(quick) -> list[Scenario]`` (the older convention) works too.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable

from corps.bench._model import Scenario

ScenarioFactory = Callable[[bool], Scenario]

SCENARIOS: dict[str, ScenarioFactory] = {}
"""Scenario name -> factory(quick), in registration order (the order of the table)."""

PLUGINS: tuple[str, ...] = (
    "corps.bench.core",      # tell, ask-latency, ask-1, ask-16, ask-256
    "corps.bench.fanin",     # tell fan-in
    "corps.bench.codec",     # encode/decode ceiling, no NATS
    "corps.bench.events",    # JetStream events (another engineer's module; optional)
    "corps.bench.sagas",     # sagas (later; optional)
    "corps.bench.saga_scale",  # sagas over 1 and 2 coordinator processes
    "corps.bench.participants",  # saga participants: @idempotent records, memory vs KV, instances
    "corps.bench.loops",     # uvloop vs asyncio, in child processes
    "corps.bench.memory",    # idle instances, in child processes
    "corps.bench.virtual",   # virtual entities over 1-3 host processes, in child processes
    "corps.bench.virtual_events",  # keyed events partitioned over 1-2 host processes vs a durable consumer
)

ALIASES: dict[str, str] = {"tell-fan-in": "fan-in", "fanin": "fan-in", "uvloop": "loops"}
"""Old or short names accepted on the command line."""


def register(name: str) -> Callable[[ScenarioFactory], ScenarioFactory]:
    """Decorator: register ``factory(quick) -> Scenario`` under ``name`` (unique)."""

    def deco(factory: ScenarioFactory) -> ScenarioFactory:
        if name in SCENARIOS and SCENARIOS[name] is not factory:
            raise ValueError(f"bench scenario {name!r} is registered twice")
        SCENARIOS[name] = factory
        return factory

    return deco


def _adapt(module: object) -> None:
    """Register the scenarios of a module using the ``scenarios(quick) -> list`` convention."""
    listing: Callable[[bool], list[Scenario]] = getattr(module, "scenarios")  # noqa: B009

    for sc in listing(False):
        def factory(quick: bool, name: str = sc.name) -> Scenario:
            return next(s for s in listing(quick) if s.name == name)

        register(sc.name)(factory)


def load(plugins: tuple[str, ...] = PLUGINS) -> dict[str, ScenarioFactory]:
    """Import the plugin modules (each registers its scenarios); return the registry."""
    for name in plugins:
        before = len(SCENARIOS)
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue  # not written yet: fine
            print(f"bench: skipping {name}: {type(exc).__name__}: {exc}", file=sys.stderr)
            continue
        except Exception as exc:  # noqa: BLE001 -- a half-written plugin must not break the other scenarios
            print(f"bench: skipping {name}: {type(exc).__name__}: {exc}", file=sys.stderr)
            continue
        if len(SCENARIOS) == before and hasattr(module, "scenarios"):
            _adapt(module)
    return SCENARIOS
