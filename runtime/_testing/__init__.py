"""Property testing for sagas (``runtime.testing`` re-exports the public names).

One idea per module: ``_plans`` (fault plans as data), ``_strategies`` (hypothesis strategies),
``_history`` (the Jepsen-style recorded history), ``_checks`` (``check_saga_invariants``),
``_pure`` (the pure engine, recorded), ``_participants`` (fault-injecting participants),
``_world`` (an end-to-end world on a real server), ``_machine`` (the state machine base),
``_profiles`` (the hypothesis profiles). See docs/testing.md.
"""

from runtime._testing._checks import DomainCheck as DomainCheck
from runtime._testing._checks import InvariantViolation as InvariantViolation
from runtime._testing._checks import assert_saga_invariants as assert_saga_invariants
from runtime._testing._checks import check_saga_invariants as check_saga_invariants
from runtime._testing._checks import saga_shape as saga_shape
from runtime._testing._history import History as History
from runtime._testing._history import LogWrite as LogWrite
from runtime._testing._history import Op as Op
from runtime._testing._machine import SagaMachine as SagaMachine
from runtime._testing._machine import run_saga_machine as run_saga_machine
from runtime._testing._participants import FaultInjector as FaultInjector
from runtime._testing._participants import InjectedFault as InjectedFault
from runtime._testing._plans import CoordinatorCrash as CoordinatorCrash
from runtime._testing._plans import FaultPlan as FaultPlan
from runtime._testing._plans import StepFault as StepFault
from runtime._testing._profiles import register_profiles as register_profiles
from runtime._testing._pure import PureRun as PureRun
from runtime._testing._pure import Turn as Turn
from runtime._testing._pure import run_pure as run_pure
from runtime._testing._strategies import benign_fault_plans as benign_fault_plans
from runtime._testing._strategies import crash_points as crash_points
from runtime._testing._strategies import fault_plans as fault_plans
from runtime._testing._strategies import saga_definitions as saga_definitions
from runtime._testing._strategies import sagas_with_plans as sagas_with_plans
from runtime._testing._strategies import shop_orders as shop_orders
from runtime._testing._strategies import step_faults as step_faults
from runtime._testing._strategies import step_names as step_names
from runtime._testing._world import SagaWorld as SagaWorld

__all__ = [
    "CoordinatorCrash", "DomainCheck", "FaultInjector", "FaultPlan", "History", "InjectedFault",
    "InvariantViolation", "LogWrite", "Op", "PureRun", "SagaMachine", "SagaWorld", "StepFault", "Turn",
    "assert_saga_invariants", "benign_fault_plans", "check_saga_invariants", "crash_points",
    "fault_plans", "register_profiles", "run_pure", "run_saga_machine", "saga_definitions",
    "saga_shape", "sagas_with_plans", "shop_orders", "step_faults", "step_names",
]
