"""Orchestrated sagas: definitions as data, and the pure engine that runs them.

A saga class lists its steps (:class:`Step`, :class:`Parallel`) with their compensations;
:class:`Engine` applies events to a :class:`SagaState` and says what to do next. The
coordinator (the I/O shell: saga log, asks, timers) drives the engine; everything here is pure.
"""

from runtime.saga._coordinator import CRASH_POINTS as CRASH_POINTS
from runtime.saga._coordinator import Coordinator as Coordinator
from runtime.saga._definition import DEFAULT_STEP_TIMEOUT as DEFAULT_STEP_TIMEOUT
from runtime.saga._definition import NOTHING_TO_UNDO as NOTHING_TO_UNDO
from runtime.saga._definition import Parallel as Parallel
from runtime.saga._definition import Saga as Saga
from runtime.saga._definition import SagaContext as SagaContext
from runtime.saga._definition import SagaDefinitionError as SagaDefinitionError
from runtime.saga._definition import Step as Step
from runtime.saga._engine import Engine as Engine
from runtime.saga._engine import advance as advance
from runtime.saga._info import SagaInfo as SagaInfo
from runtime.saga._participant import compensation as compensation
from runtime.saga._participant import idempotent as idempotent
from runtime.saga._retry import DEFAULT_RETRY as DEFAULT_RETRY
from runtime.saga._retry import DEFAULT_UNDO_RETRY as DEFAULT_UNDO_RETRY
from runtime.saga._retry import Retry as Retry
from runtime.saga._state import Command as Command
from runtime.saga._state import Event as Event
from runtime.saga._state import Finish as Finish
from runtime.saga._state import Kind as Kind
from runtime.saga._state import OperatorRetry as OperatorRetry
from runtime.saga._state import RetryDue as RetryDue
from runtime.saga._state import SagaState as SagaState
from runtime.saga._state import SagaStatus as SagaStatus
from runtime.saga._state import ScheduleRetry as ScheduleRetry
from runtime.saga._state import SendStep as SendStep
from runtime.saga._state import SendUndo as SendUndo
from runtime.saga._state import Started as Started
from runtime.saga._state import StepFailed as StepFailed
from runtime.saga._state import StepState as StepState
from runtime.saga._state import StepStatus as StepStatus
from runtime.saga._state import StepSucceeded as StepSucceeded
from runtime.saga._state import StepTimedOut as StepTimedOut
from runtime.saga._state import Transition as Transition
from runtime.saga._state import UndoFailed as UndoFailed
from runtime.saga._state import UndoStatus as UndoStatus
from runtime.saga._state import UndoSucceeded as UndoSucceeded
from runtime.saga._state import UndoTimedOut as UndoTimedOut
from runtime.saga._state import decode_state as decode_state
from runtime.saga._state import encode_state as encode_state
from runtime.saga._state import step_key as step_key

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
    "idempotent",
    "step_key",
]
