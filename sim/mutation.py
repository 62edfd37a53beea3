"""Deliberate RTL mutations: each block's tests must fail with one applied.

A mutation is a small, plausible bug put into a block's RTL for one test run (a monkeypatch of a
module-level definition its ``elaborate`` uses, kept as a test parameter next to the unmutated
run). :func:`must_fail` turns "the run failed" into the test's pass condition, so a test that can
no longer see the bug fails itself::

    @pytest.mark.parametrize("mutant", [None, "no_forwarding"])
    def test_x(mutant, monkeypatch):
        if mutant:
            monkeypatch.setattr("equispike.rtl.engine._SEL_ACC", lambda b, c, d: b & c)
        with must_fail(mutant):
            run_and_compare()
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

__all__ = ["DETECTED", "must_fail"]

#: What a detected mutation raises: a mismatch or contract violation (``AssertionError``), or a
#: stream that stops delivering (``TimeoutError``)
DETECTED = (AssertionError, TimeoutError)


@contextlib.contextmanager
def must_fail(mutant: str | None) -> Iterator[None]:
    """No-op for ``mutant=None``; otherwise the block must raise one of :data:`DETECTED`."""
    if mutant is None:
        yield
        return
    try:
        yield
    except DETECTED as exc:
        print(f"mutation {mutant!r} detected: {type(exc).__name__}: {str(exc)[:300]}")
        return
    raise AssertionError(f"mutation {mutant!r} went undetected: the test passed with it")
