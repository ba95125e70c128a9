"""Orchestrated sagas: definitions as data, and the pure engine that runs them.

A saga class lists its steps (:class:`Step`, :class:`Parallel`) with their compensations;
:class:`Engine` applies events to a :class:`SagaState` and says what to do next. The
coordinator (the I/O shell: saga log, asks, timers) drives the engine; everything here is pure.
"""

from corps.saga._coordinator import CRASH_POINTS as CRASH_POINTS
from corps.saga._coordinator import Coordinator as Coordinator
from corps.saga._definition import DEFAULT_STEP_TIMEOUT as DEFAULT_STEP_TIMEOUT
from corps.saga._definition import NOTHING_TO_UNDO as NOTHING_TO_UNDO
from corps.saga._definition import Parallel as Parallel
from corps.saga._definition import Saga as Saga
from corps.saga._definition import SagaContext as SagaContext
from corps.saga._definition import SagaDefinitionError as SagaDefinitionError
from corps.saga._definition import Step as Step
from corps.saga._engine import Engine as Engine
from corps.saga._engine import advance as advance
from corps.saga._idempotency import ForwardState as ForwardState
from corps.saga._idempotency import forward_state as forward_state
from corps.saga._info import SagaInfo as SagaInfo
from corps.saga._participant import compensation as compensation
from corps.saga._participant import idempotent as idempotent
from corps.saga._retry import DEFAULT_RETRY as DEFAULT_RETRY
from corps.saga._retry import DEFAULT_UNDO_RETRY as DEFAULT_UNDO_RETRY
from corps.saga._retry import Retry as Retry
from corps.saga._state import Command as Command
from corps.saga._state import Event as Event
from corps.saga._state import Finish as Finish
from corps.saga._state import Kind as Kind
from corps.saga._state import OperatorRetry as OperatorRetry
from corps.saga._state import RetryDue as RetryDue
from corps.saga._state import SagaState as SagaState
from corps.saga._state import SagaStatus as SagaStatus
from corps.saga._state import ScheduleRetry as ScheduleRetry
from corps.saga._state import SendStep as SendStep
from corps.saga._state import SendUndo as SendUndo
from corps.saga._state import Started as Started
from corps.saga._state import StepFailed as StepFailed
from corps.saga._state import StepState as StepState
from corps.saga._state import StepStatus as StepStatus
from corps.saga._state import StepSucceeded as StepSucceeded
from corps.saga._state import StepTimedOut as StepTimedOut
from corps.saga._state import Transition as Transition
from corps.saga._state import UndoFailed as UndoFailed
from corps.saga._state import UndoStatus as UndoStatus
from corps.saga._state import UndoSucceeded as UndoSucceeded
from corps.saga._state import UndoTimedOut as UndoTimedOut
from corps.saga._state import decode_state as decode_state
from corps.saga._state import encode_state as encode_state
from corps.saga._state import step_key as step_key

__all__ = [
    "CRASH_POINTS",
    "DEFAULT_RETRY",
    "DEFAULT_STEP_TIMEOUT",
    "DEFAULT_UNDO_RETRY",
    "NOTHING_TO_UNDO",
    "Command",
    "Coordinator",
    "Engine",
    "Event",
    "Finish",
    "ForwardState",
    "Kind",
    "OperatorRetry",
    "Parallel",
    "Retry",
    "RetryDue",
    "Saga",
    "SagaContext",
    "SagaDefinitionError",
    "SagaInfo",
    "SagaState",
    "SagaStatus",
    "ScheduleRetry",
    "SendStep",
    "SendUndo",
    "Started",
    "Step",
    "StepFailed",
    "StepState",
    "StepStatus",
    "StepSucceeded",
    "StepTimedOut",
    "Transition",
    "UndoFailed",
    "UndoStatus",
    "UndoSucceeded",
    "UndoTimedOut",
    "advance",
    "compensation",
    "decode_state",
    "encode_state",
    "forward_state",
    "idempotent",
    "step_key",
]
