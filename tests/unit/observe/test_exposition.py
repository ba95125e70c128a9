"""The Prometheus text format, read back by prometheus_client's own parser."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from corps.observe._exposition import OVERFLOW, Family, render


def parse(body: bytes) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    out: dict[str, list[tuple[str, dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(body.decode()):
        out[family.name] = [(s.name, s.labels, s.value) for s in family.samples]
    return out


@given(st.text(max_size=40))
def test_any_label_value_round_trips_through_the_parser(value: str) -> None:
    f = Family("corps_x_total", "a help with \\ and \n", "counter", ("class",))
    f.inc((value,), 3)
    assert parse(render([f]))["corps_x"] == [("corps_x_total", {"class": value}, 3.0)]


def test_quotes_backslashes_and_newlines_are_escaped() -> None:
    f = Family("corps_x", "x", "gauge", ("step",))
    f.set(('a"b\\c\nd',), 1)
    assert b'corps_x{step="a\\"b\\\\c\\nd"} 1\n' in render([f])


def test_series_beyond_the_bound_fold_into_one_and_are_counted() -> None:
    f = Family("corps_x_total", "x", "counter", ("class", "type"), max_series=3)
    for i in range(5):
        f.inc((f"C{i}", "T"))
    f.inc(("C0", "T"))  # a known series still counts as itself
    samples = parse(render([f]))
    assert {s[1]["class"]: s[2] for s in samples["corps_x"]} == {"C0": 2, "C1": 1, "C2": 1, OVERFLOW: 2}
    assert samples["corps_metrics_folded"] == [("corps_metrics_folded_total", {"metric": "corps_x_total"}, 2.0)]


def test_a_histogram_has_cumulative_buckets_a_sum_and_a_count() -> None:
    f = Family("corps_h_seconds", "h", "histogram", ("class",), buckets=(0.1, 1.0))
    for v in (0.05, 0.5, 0.5, 5.0):
        f.observe(("A",), v)
    samples = {(n, s.get("le")): v for n, s, v in parse(render([f]))["corps_h_seconds"]}
    assert samples[("corps_h_seconds_bucket", "0.1")] == 1
    assert samples[("corps_h_seconds_bucket", "1.0")] == 3
    assert samples[("corps_h_seconds_bucket", "+Inf")] == 4
    assert samples[("corps_h_seconds_count", None)] == 4
    assert samples[("corps_h_seconds_sum", None)] == pytest.approx(6.05)
