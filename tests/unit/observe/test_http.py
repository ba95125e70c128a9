"""The /metrics endpoint's answer to any request head: 200 for a scrape, 4xx otherwise, never an exception."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from corps.observe._http import answer


def scrape() -> tuple[str, bytes]:
    return "text/plain; version=0.0.4", b"corps_up 1\n"


def test_a_scrape_gets_the_body_and_its_content_type() -> None:
    response = answer(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", scrape)
    assert response.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Content-Type: text/plain; version=0.0.4\r\n" in response
    assert response.endswith(b"\r\n\r\ncorps_up 1\n")
    assert answer(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n", scrape).startswith(b"HTTP/1.1 200")
    head = answer(b"HEAD /metrics HTTP/1.1\r\n\r\n", scrape)
    assert head.endswith(b"\r\n\r\n")
    assert b"Content-Length: 11" in head


def test_other_paths_methods_and_garbage_get_4xx() -> None:
    assert answer(b"GET / HTTP/1.1\r\n\r\n", scrape).startswith(b"HTTP/1.1 404")
    assert answer(b"POST /metrics HTTP/1.1\r\n\r\n", scrape).startswith(b"HTTP/1.1 405")
    assert answer(b"\x00\xff\r\n\r\n", scrape).startswith(b"HTTP/1.1 400")


@given(st.binary(max_size=200))
def test_any_head_gets_an_http_response(head: bytes) -> None:
    assert answer(head, scrape).startswith(b"HTTP/1.1 ")
