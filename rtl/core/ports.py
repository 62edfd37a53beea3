"""Memory-port signatures of the core's units, and the lane helpers they share.

Every memory of the core has a fixed set of ports; each unit that uses a port has a member of the
matching signature, and the core connects the active unit's member to the port
(:func:`connect_ports`). Rows are packed words: lane ``l`` occupies bits ``l·w … l·w + w − 1``.
"""

from __future__ import annotations

from amaranth.hdl import C, Cat, Module, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["ReadPort", "WritePort", "lane", "pack", "connect_ports", "log2_exact"]


class ReadPort(wiring.Signature):
    """A synchronous read port as seen by a unit: ``data`` is the row at ``addr`` of the previous
    cycle in which ``en`` was high.

    Members
    -------
    addr : Out(addr_width)
    en : Out(1)
    data : In(data_width)
    """

    def __init__(self, addr_width: int, data_width: int):
        super().__init__({"addr": Out(addr_width), "en": Out(1), "data": In(data_width)})


class WritePort(wiring.Signature):
    """A write port as seen by a unit: ``data`` is written to ``addr`` at the end of a cycle with ``en``.

    Members
    -------
    addr : Out(addr_width)
    en : Out(1)
    data : Out(data_width)
    """

    def __init__(self, addr_width: int, data_width: int):
        super().__init__({"addr": Out(addr_width), "en": Out(1), "data": Out(data_width)})


def log2_exact(n: int) -> int:
    if n < 1 or n & (n - 1):
        raise ValueError(f"{n} is not a power of two")
    return n.bit_length() - 1


def lane(word: Value, index: int, width: int, signed: bool = True) -> Value:
    """Lane ``index`` of a packed row."""
    v = word[index * width : (index + 1) * width]
    return v.as_signed() if signed else v


def fit(value, width: int) -> Value:
    """``value`` as exactly ``width`` bits: truncated, or extended by its own signedness."""
    v = Value.cast(value)
    if len(v) >= width:
        return v[:width]
    ext = v[-1] if (len(v) and v.shape().signed) else C(0, 1)
    return Cat(v, ext.replicate(width - len(v)))


def pack(values, width: int) -> Value:
    """A row of lanes of exactly ``width`` bits each (a narrower lane value is extended by its
    signedness, so every lane lands at its own offset)."""
    return Cat(*(fit(v, width) for v in values))


def connect_ports(m: Module, select: Signal, port, users: dict, read: bool | None = None) -> None:
    """Drive a memory port from the unit member chosen by ``select`` (``{select value: member}``);
    every user sees the port's read data. ``port`` is an Amaranth memory port, or any object with
    ``addr``, ``en`` and ``data`` signals if ``read`` says which kind it is."""
    is_read = hasattr(port, "transparent_for") if read is None else read
    with m.Switch(select):
        for key, member in users.items():
            with m.Case(key):
                m.d.comb += [port.addr.eq(member.addr), port.en.eq(member.en)]
                if not is_read:
                    m.d.comb += port.data.eq(member.data)
    if is_read:
        for member in users.values():
            m.d.comb += member.data.eq(port.data)
