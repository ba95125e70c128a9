"""Find the actor class that ``corps run module:Class`` names, with errors a user can act on."""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from typing import Any

from corps.core._actor import Actor
from corps.errors import ActorDefinitionError, AppDefinitionError
from corps.saga._definition import Saga, SagaDefinitionError
from corps.system._actor import Actor as UserActor
from corps.system._app import App


class LoadError(Exception):
    """The named class cannot be hosted; ``str()`` says why, ``detail`` may hold a traceback."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


def load_actor_class(spec: str) -> type[Actor]:
    """Import ``module:Class`` (``Class`` may be dotted) and check that it is an Actor subclass.

    The current directory is put first on ``sys.path``, so ``corps run app:Worker`` finds
    ``./app.py`` as ``python -m`` would.

    Raises:
        LoadError: a malformed spec, a missing module or attribute, an import that failed (with
            its traceback in ``detail``), or an object that is not an Actor subclass.
    """
    obj = load_object(spec, "module:ActorClass (for example corps.examples.demo:Account)")
    if not (isinstance(obj, type) and issubclass(obj, Actor)):
        what = f"a {type(obj).__name__}" if not isinstance(obj, type) else f"the class {obj.__qualname__}"
        raise LoadError(f"{spec} is {what}, not an Actor subclass")
    if obj is Actor or obj is UserActor:
        raise LoadError(f"{spec} is the Actor base class itself; name a subclass with @handler methods")
    return obj


def load_app(spec: str, ids: list[str] | None = None, instances: int = 1) -> App:
    """The application ``corps run MODULE:APP`` names: an ``App``, a function returning one, or an
    Actor class (then ``ids``, and ``instances`` for a service class, make a one-class App).

    Raises:
        LoadError: as for load_actor_class; the object is none of these; an Actor class without
            ids; or the App is invalid (AppDefinitionError, all its problems at once).
    """
    obj = load_object(spec, "MODULE:APP (for example corps.examples.shop.app:app) or MODULE:ActorClass")
    try:
        if ids:  # the one-class form: MODULE:ActorClass --id ...
            return App.single(load_actor_class(spec), ids, instances)
        if isinstance(obj, type) and issubclass(obj, Actor):
            raise LoadError(f"{spec} is an actor class: give the ids to spawn with --id (or name an App)")
        if callable(obj) and not isinstance(obj, App | type):
            try:
                obj = obj()
            except AppDefinitionError:
                raise
            except Exception as exc:
                raise LoadError(f"{spec}() failed: {type(exc).__name__}: {exc}", traceback.format_exc()) from exc
    except AppDefinitionError as exc:
        raise LoadError(str(exc)) from exc
    if not isinstance(obj, App):
        raise LoadError(f"{spec} is a {type(obj).__name__}: name a corps.App, a function returning one, "
                        f"or an Actor class")
    return obj


def load_saga_class(spec: str) -> type[Saga[Any]]:
    """Import ``module:SagaClass`` and check that it is a saga definition.

    Raises:
        LoadError: as for load_actor_class, or the object is not a Saga subclass with steps.
    """
    obj = load_object(spec, "module:SagaClass (for example corps.examples.shop.orchestrated:PlaceOrder)")
    if not (isinstance(obj, type) and issubclass(obj, Saga) and "stages" in vars(obj)):
        raise LoadError(f"{spec} is not a Saga subclass with steps")
    return obj


def load_object(spec: str, form: str) -> object:
    """Import ``module:attr`` (``attr`` may be dotted) with errors a user can act on.

    Raises:
        LoadError: a malformed spec, a missing module or attribute, or an import that failed.
    """
    module_name, colon, attr = spec.partition(":")
    if not colon or not module_name or not attr:
        raise LoadError(f"{spec!r} is not of the form {form}")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Only the module itself (or a parent package) being absent is a usage error; a missing
        # dependency inside the user's module is a bug in that module, shown with its traceback.
        if exc.name is not None and (module_name + ".").startswith(exc.name + "."):
            raise LoadError(f"no module named {exc.name!r} (searched the current directory {cwd} "
                            f"and the Python path)") from exc
        raise LoadError(f"importing {module_name!r} failed: {exc}", traceback.format_exc()) from exc
    except (ActorDefinitionError, SagaDefinitionError) as exc:  # already lists every problem of the class
        raise LoadError(str(exc)) from exc
    except Exception as exc:
        raise LoadError(f"importing {module_name!r} failed: {type(exc).__name__}: {exc}",
                        traceback.format_exc()) from exc
    obj: object = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise LoadError(f"module {module_name!r} has no attribute {attr!r}") from None
    return obj
