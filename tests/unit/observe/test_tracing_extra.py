"""Tracing without OpenTelemetry installed: a typed error that says which extra to install."""

from __future__ import annotations

import sys

import pytest

from corps import CorpsError, ExtraNotInstalled
from corps.observe import Tracing


def test_tracing_without_opentelemetry_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # as if not installed: import raises ImportError
    with pytest.raises(ExtraNotInstalled) as err:
        Tracing()
    assert isinstance(err.value, ImportError)
    assert isinstance(err.value, CorpsError)
    assert err.value.extra == "otel"
    assert "pip install 'corps[otel]'" in str(err.value)
