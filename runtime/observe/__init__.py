"""Observation: OpenTelemetry tracing and Prometheus metrics (docs/observability.md).

    from corps import ActorSystem
    from corps.observe import Metrics, Tracing

    metrics = Metrics()
    async with ActorSystem(observers=[Tracing(), metrics]) as system:
        content_type, body = metrics.scrape()    # serve it at /metrics from your own server

``Tracing`` needs the ``otel`` extra (``pip install 'corps[otel]'``); ``Metrics`` needs nothing.
"""

from corps.core._observe import Observer as Observer
from corps.observe._exposition import CONTENT_TYPE as CONTENT_TYPE
from corps.observe._exposition import MAX_SERIES as MAX_SERIES
from corps.observe._http import serve_metrics as serve_metrics
from corps.observe._metrics import Metrics as Metrics
from corps.observe._otel import Tracing as Tracing

__all__ = ["CONTENT_TYPE", "MAX_SERIES", "Metrics", "Observer", "Tracing", "serve_metrics"]
