"""Small building blocks of the proof wrappers: a shadow queue and the RFC 61 stream rules."""

from __future__ import annotations

from amaranth.hdl import Array, Assert, Assume, Const, Fragment, Module, ResetSignal, Shape, Signal, Value
from amaranth.hdl._mem import MemoryInstance
from amaranth.lib import data
from amaranth.utils import ceil_log2

__all__ = ["ShadowQueue", "assert_stream_rules", "assume_stream_rules", "signals_by_name",
           "subfragment", "memory_taps"]


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


def signals_by_name(frag: Fragment) -> dict[str, Signal]:
    """The signals a fragment's own statements assign, by name (not its subfragments').

    The induction proofs relate their shadow state to a block's pipeline registers: these are
    local to the block's ``elaborate``, so the elaborated fragment is the only handle on them.
    A name assigned by two different signals maps to neither (looking it up raises ``KeyError``).
    """
    found: dict[str, Signal | None] = {}
    for stmts in frag.statements.values():
        for stmt in stmts:
            for sig in stmt._lhs_signals():
                prev = found.get(sig.name, sig)
                found[sig.name] = sig if prev is sig else None
    return {k: v for k, v in found.items() if v is not None}


def subfragment(frag: Fragment, name: str) -> Fragment:
    """The subfragment called ``name`` (e.g. a block's RAM, ``m.submodules.<name>``)."""
    subs = [sf for sf, n, _ in frag.subfragments if n == name]
    if len(subs) != 1:
        raise KeyError(f"{len(subs)} subfragments called {name!r}")
    return subs[0]


def memory_taps(ram_frag: Fragment, name: str) -> list[Signal]:
    """Every word of the memory inside an elaborated ``RegisteredRAM`` (``target=None`` or
    ``"generic"``) as a signal: one asynchronous read port per word, added to the memory for the
    proof only (it changes nothing the block reads or writes).

    An induction proof starts from any state, memory contents included: the words a block keeps
    for longer than the induction depth must be tied to the shadow state by assertions on them.
    """
    mem = subfragment(ram_frag, "mem")
    if not isinstance(mem, MemoryInstance):
        raise TypeError(f"{name}: no memory to tap (an ECP5 primitive?)")
    width = Shape.cast(mem._data.shape).width
    depth = mem._data.depth
    abits = ceil_log2(depth)
    taps = []
    for i in range(depth):
        tap = Signal(width, name=f"{name}_w{i}")
        mem.read_port(domain="comb", addr=Const(i, abits), data=tap, en=Const(1, 1),
                      transparent_for=())
        taps.append(tap)
    return taps
