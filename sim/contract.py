"""The stream contract, checked cycle by cycle on every monitored stream (cocotb and Amaranth sim).

One checker for both simulators: the cocotb :class:`~equispike.sim.streams.StreamMonitor` and the
Amaranth-simulator helpers of :mod:`equispike.sim.amaranth_tb` feed it what they sample before
each rising clock edge (``valid``, ``ready``, the payload bits). It enforces the handshake rules
of ``amaranth.lib.stream`` (Amaranth RFC 61):

* a transfer happens at a rising edge where ``valid`` and ``ready`` are both high;
* once ``valid`` is high it stays high until the transfer (no beat is withdrawn);
* the payload does not change while ``valid`` is high and ``ready`` low;

and the test's own expectation of the stream:

* no beat after the last expected one: with ``expected`` beats transferred, ``valid`` stays low
  (a monitor keeps sampling a few cycles after its last beat to see it);
* ``check_beat(index, item)``, if given, on every transferred beat (e.g. padding lanes are 0).

A violation raises :class:`ContractViolation` naming the stream, the cycle and the beat.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["ContractViolation", "StreamChecker", "TAIL_CYCLES"]

#: Cycles a monitor keeps sampling after its last expected beat (longer than any block's
#: output pipeline needs to bring out a stray beat once its input has stopped)
TAIL_CYCLES = 16


class ContractViolation(AssertionError):
    """A stream broke the valid/ready contract or sent a beat the test did not expect."""


class StreamChecker:
    """Checks one stream, one sample per clock cycle.

    Parameters
    ----------
    name:
        Stream name used in messages (e.g. ``"o_stream"``).
    expected:
        Number of beats the stream must carry in total (``None``: not limited).
    check_beat:
        Optional ``f(index, item)`` called on every transferred beat after it is unpacked by the
        caller (:meth:`beat`); it raises (e.g. ``AssertionError``) on a bad beat.

    Members
    -------
    beats:
        Beats transferred so far.
    cycle:
        Cycles sampled so far.
    """

    def __init__(self, name: str, expected: int | None = None,
                 check_beat: Callable[[int, object], None] | None = None):
        if expected is not None and (isinstance(expected, bool) or int(expected) != expected
                                     or expected < 0):
            raise ValueError(f"expected must be a non-negative integer or None, got {expected!r}")
        self.name = name
        self.expected = None if expected is None else int(expected)
        self.check_beat = check_beat
        self.beats = 0
        self.cycle = 0
        self._held: int | None = None       # payload of a beat offered but not yet taken

    def _fail(self, what: str) -> None:
        raise ContractViolation(f"stream {self.name!r}, cycle {self.cycle}, beat {self.beats}: {what}")

    def sample(self, valid, ready, payload) -> bool:
        """Values sampled before one rising edge; returns True if a beat transfers at that edge."""
        valid, ready = bool(valid), bool(ready)
        if self._held is not None:
            if not valid:
                self._fail("valid dropped before the beat was transferred")
            if int(payload) != self._held:
                self._fail(f"payload changed while valid and not ready ({self._held:#x} -> "
                           f"{int(payload):#x})")
        if valid and self.expected is not None and self.beats >= self.expected:
            self._fail(f"valid after the last expected beat (expected {self.expected} beats)")
        fire = valid and ready
        self._held = int(payload) if valid and not ready else None
        if fire:
            self.beats += 1
        self.cycle += 1
        return fire

    def beat(self, item) -> None:
        """Checks the unpacked item of the beat that :meth:`sample` just reported."""
        if self.check_beat is not None:
            self.check_beat(self.beats - 1, item)

    def complete(self) -> None:
        """Raises unless exactly ``expected`` beats were transferred."""
        if self.expected is not None and self.beats != self.expected:
            raise ContractViolation(f"stream {self.name!r}: {self.beats} beats transferred, "
                                    f"{self.expected} expected")
