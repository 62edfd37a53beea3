"""Small building blocks of the proof wrappers: a shadow queue and the RFC 61 stream rules."""

from __future__ import annotations

from amaranth.hdl import Array, Assert, Assume, Module, ResetSignal, Signal, Value
from amaranth.lib import data

__all__ = ["ShadowQueue", "assert_stream_rules", "assume_stream_rules"]


class ShadowQueue:
    """A queue of expected values kept by a proof wrapper (registers, ``depth`` a power of two).

    ``push`` (with ``data``), ``pop`` and ``flush`` are driven by the caller; ``front`` is the
    oldest entry, ``count`` the number held. Pushing into a full queue is itself an assertion
    failure: the wrapper must be sized for the design's largest backlog.
    """

    def __init__(self, m: Module, shape, depth: int, name: str):
        if depth < 2 or depth & (depth - 1):
            raise ValueError(f"ShadowQueue depth must be a power of two >= 2, got {depth}")
        self.depth = depth
        self.items = Array(Signal(shape, name=f"{name}_q{i}") for i in range(depth))
        self.head = Signal(range(depth), name=f"{name}_head")
        self.count = Signal(range(depth + 1), name=f"{name}_count")
        self.push = Signal(name=f"{name}_push")
        self.pop = Signal(name=f"{name}_pop")
        self.flush = Signal(name=f"{name}_flush")
        self.data = Signal(shape, name=f"{name}_data")
        self.front = self.items[self.head]
        tail = (self.head + self.count)[:len(self.head)]
        m.d.comb += Assert(~self.push | (self.count < depth) | self.pop,
                           f"{name}: shadow queue overflow (wrapper too small)")
        with m.If(self.flush):
            m.d.sync += [self.head.eq(0), self.count.eq(0)]
        with m.Else():
            with m.If(self.push):
                m.d.sync += self.items[tail].eq(self.data)
            with m.If(self.pop):
                m.d.sync += self.head.eq(self.head + 1)
            m.d.sync += self.count.eq(self.count + self.push - self.pop)


def assert_stream_rules(m: Module, stream, name: str, restart: Value | None = None,
                        check=Assert) -> None:
    """Assert the stream rules of Amaranth RFC 61 on a producer's ``stream`` interface: once
    ``valid`` is high without ``ready``, in the next cycle ``valid`` is still high and the
    payload unchanged.

    ``restart`` (e.g. a block's ``clear`` strobe) abandons the transfer in progress, as reset
    does: the rule is not applied across a cycle with it (or with the domain's reset).
    """
    p_wait = Signal(name=f"{name}_p_wait")             # valid & ~ready in the cycle before
    p_payload = Signal.like(Value.cast(stream.payload) if not isinstance(stream.payload, data.View)
                            else stream.payload.as_value(), name=f"{name}_p_payload")
    cancel = ResetSignal() if restart is None else restart | ResetSignal()
    m.d.sync += [p_wait.eq(stream.valid & ~stream.ready & ~cancel),
                 p_payload.eq(Value.cast(stream.payload))]
    with m.If(p_wait):
        m.d.comb += [
            check(stream.valid, f"{name}: valid dropped before the transfer"),
            check(Value.cast(stream.payload) == p_payload,
                   f"{name}: payload changed while valid and not ready"),
        ]


def assume_stream_rules(m: Module, stream, name: str, restart: Value | None = None) -> None:
    """Assume the RFC 61 rules of a producer driving ``stream`` (a block's input): the
    precondition of a block that passes its input's ``valid`` through to its output."""
    assert_stream_rules(m, stream, name, restart, check=Assume)
