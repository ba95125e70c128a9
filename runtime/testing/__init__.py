"""Test support for corps users (and corps itself).

Two parts, so that installing corps never breaks another project's pytest:

* ``corps.testing.plugin``: the pytest plugin (fixtures that start real nats-servers, clusters
  and actor systems), registered through the ``pytest11`` entry point. It needs only pytest and
  corps's own dependencies; ``NatsCluster`` and ``ClusterNotFormed`` are importable from here.
* Property testing of sagas (hypothesis strategies for fault plans, the recorded history,
  ``check_saga_invariants``, the pure and end-to-end drivers, ``SagaMachine``). These names are
  imported on first use and need the test extra: ``pip install 'corps[test]'``.

One idea per module: ``_plans`` (fault plans as data), ``_strategies`` (hypothesis strategies),
``_history`` (the Jepsen-style recorded history), ``_checks`` (``check_saga_invariants``),
``_pure`` (the pure engine, recorded), ``_participants`` (fault-injecting participants),
``_copy`` (``fast_copy``: a saga with short timeouts),
``_world`` (an end-to-end world on a real server), ``_machine`` (the state machine base),
``_profiles`` (the hypothesis profiles). See docs/testing.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from corps.testing._cluster import ClusterNotFormed as ClusterNotFormed
from corps.testing._cluster import NatsCluster as NatsCluster

if TYPE_CHECKING:
    from corps.testing._checks import DomainCheck as DomainCheck
    from corps.testing._checks import InvariantViolation as InvariantViolation
    from corps.testing._checks import assert_saga_invariants as assert_saga_invariants
    from corps.testing._checks import check_saga_invariants as check_saga_invariants
    from corps.testing._checks import saga_shape as saga_shape
    from corps.testing._copy import fast_copy as fast_copy
    from corps.testing._history import History as History
    from corps.testing._history import LogWrite as LogWrite
    from corps.testing._history import Op as Op
    from corps.testing._machine import SagaMachine as SagaMachine
    from corps.testing._machine import run_saga_machine as run_saga_machine
    from corps.testing._participants import FaultInjector as FaultInjector
    from corps.testing._participants import InjectedFault as InjectedFault
    from corps.testing._plans import CoordinatorCrash as CoordinatorCrash
    from corps.testing._plans import FaultPlan as FaultPlan
    from corps.testing._plans import StepFault as StepFault
    from corps.testing._profiles import register_profiles as register_profiles
    from corps.testing._pure import PureRun as PureRun
    from corps.testing._pure import Turn as Turn
    from corps.testing._pure import run_pure as run_pure
    from corps.testing._strategies import benign_fault_plans as benign_fault_plans
    from corps.testing._strategies import crash_points as crash_points
    from corps.testing._strategies import fault_plans as fault_plans
    from corps.testing._strategies import saga_definitions as saga_definitions
    from corps.testing._strategies import sagas_with_plans as sagas_with_plans
    from corps.testing._strategies import shop_orders as shop_orders
    from corps.testing._strategies import step_faults as step_faults
    from corps.testing._strategies import step_names as step_names
    from corps.testing._world import SagaWorld as SagaWorld

_LAZY: dict[str, str] = {
    "DomainCheck": "corps.testing._checks",
    "InvariantViolation": "corps.testing._checks",
    "assert_saga_invariants": "corps.testing._checks",
    "check_saga_invariants": "corps.testing._checks",
    "saga_shape": "corps.testing._checks",
    "fast_copy": "corps.testing._copy",
    "History": "corps.testing._history",
    "LogWrite": "corps.testing._history",
    "Op": "corps.testing._history",
    "SagaMachine": "corps.testing._machine",
    "run_saga_machine": "corps.testing._machine",
    "FaultInjector": "corps.testing._participants",
    "InjectedFault": "corps.testing._participants",
    "CoordinatorCrash": "corps.testing._plans",
    "FaultPlan": "corps.testing._plans",
    "StepFault": "corps.testing._plans",
    "register_profiles": "corps.testing._profiles",
    "PureRun": "corps.testing._pure",
    "Turn": "corps.testing._pure",
    "run_pure": "corps.testing._pure",
    "benign_fault_plans": "corps.testing._strategies",
    "crash_points": "corps.testing._strategies",
    "fault_plans": "corps.testing._strategies",
    "saga_definitions": "corps.testing._strategies",
    "sagas_with_plans": "corps.testing._strategies",
    "shop_orders": "corps.testing._strategies",
    "step_faults": "corps.testing._strategies",
    "step_names": "corps.testing._strategies",
    "SagaWorld": "corps.testing._world",
}


def __getattr__(name: str) -> Any:
    """Import the property-testing names on first use: they need hypothesis (the test extra)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'corps.testing' has no attribute {name!r}")
    try:
        value = getattr(importlib.import_module(module), name)
    except ModuleNotFoundError as exc:
        if exc.name not in ("hypothesis", "pytest"):
            raise
        raise ImportError(f"corps.testing.{name} needs {exc.name}, which is in corps's test extra: "
                          f"pip install 'corps[test]'", name=exc.name) from exc
    globals()[name] = value
    return value


__all__ = [
    "ClusterNotFormed",
    "CoordinatorCrash",
    "DomainCheck",
    "FaultInjector",
    "FaultPlan",
    "History",
    "InjectedFault",
    "InvariantViolation",
    "LogWrite",
    "NatsCluster",
    "Op",
    "PureRun",
    "SagaMachine",
    "SagaWorld",
    "StepFault",
    "Turn",
    "assert_saga_invariants",
    "benign_fault_plans",
    "check_saga_invariants",
    "crash_points",
    "fast_copy",
    "fault_plans",
    "register_profiles",
    "run_pure",
    "run_saga_machine",
    "saga_definitions",
    "saga_shape",
    "sagas_with_plans",
    "shop_orders",
    "step_faults",
    "step_names",
]
