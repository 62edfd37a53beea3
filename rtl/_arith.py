"""Arithmetic building blocks of the differential norm units: divider and integer square root.

* :class:`PipelinedDivider` -- unsigned restoring division, one quotient bit per stage, fully
  pipelined (one division per cycle, latency = quotient bits), with a global stall enable.
* :class:`SequentialIsqrt` -- exact floor square root, digit by digit (the algorithm of
  :func:`equispike.model.intops.isqrt`), one result bit per cycle.

Floor (toward −∞) division of a signed numerator is done by the users from the unsigned
quotient and remainder of the magnitude: ``n // d = -(q + (r != 0))`` when ``n < 0``.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["PipelinedDivider", "SequentialIsqrt", "check_int"]


def check_int(name: str, value, lo: int, hi: int | None = None) -> int:
    """Validate a generator parameter: an ``int`` (not ``bool``) in ``[lo, hi]``."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        rng = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ValueError(f"{name} must be {rng}, got {value}")
    return value


class PipelinedDivider(wiring.Component):
    """Unsigned restoring divider, fully pipelined.

    Computes ``quo = num // den`` and ``rem = num % den`` for ``den >= 1`` under the precondition
    ``num < den · 2^quo_width`` (the quotient fits ``quo_width`` bits); a tag travels alongside.

    Latency: ``quo_width`` cycles (one registered stage per quotient bit). Throughput: one division
    per cycle. All stages advance together when ``en`` is high (global stall).

    Parameters
    ----------
    num_width, den_width, quo_width, tag_width:
        Widths of the numerator, denominator, quotient and tag (all unsigned).
    """

    def __init__(self, num_width: int, den_width: int, quo_width: int, tag_width: int = 1):
        self.num_width = check_int("num_width", num_width, 1)
        self.den_width = check_int("den_width", den_width, 1)
        self.quo_width = check_int("quo_width", quo_width, 1)
        self.tag_width = check_int("tag_width", tag_width, 1)
        super().__init__({
            "en": In(1),
            "i_valid": In(1),
            "i_num": In(num_width),
            "i_den": In(den_width),
            "i_tag": In(tag_width),
            "o_valid": Out(1),
            "o_quo": Out(quo_width),
            "o_rem": Out(num_width),
            "o_tag": Out(tag_width),
        })

    def elaborate(self, platform):
        m = Module()
        valid, rem, den, quo, tag = self.i_valid, self.i_num, self.i_den, None, self.i_tag
        for b in reversed(range(self.quo_width)):
            sh = den << b
            fits = rem >= sh
            n_valid = Signal(name=f"v{b}")
            n_rem = Signal(self.num_width, name=f"r{b}")
            n_den = Signal(self.den_width, name=f"d{b}")
            n_quo = Signal(unsigned(self.quo_width - b), name=f"q{b}")
            n_tag = Signal(self.tag_width, name=f"t{b}")
            with m.If(self.en):
                m.d.sync += [
                    n_valid.eq(valid),
                    n_rem.eq(Mux(fits, rem - sh, rem)),
                    n_den.eq(den),
                    n_tag.eq(tag),
                ]
                if quo is None:
                    m.d.sync += n_quo.eq(fits)
                else:
                    m.d.sync += n_quo.eq((quo << 1) | fits)
            valid, rem, den, quo, tag = n_valid, n_rem, n_den, n_quo, n_tag
        m.d.comb += [
            self.o_valid.eq(valid),
            self.o_quo.eq(quo),
            self.o_rem.eq(rem),
            self.o_tag.eq(tag),
        ]
        return m


class SequentialIsqrt(wiring.Component):
    """Exact floor square root of an unsigned ``width``-bit value, digit by digit.

    Same recurrence as :func:`equispike.model.intops.isqrt` (``trial = res + bit``; subtract and
    set when ``x >= trial``; ``bit >>= 2``), started at the largest power of four below ``2^width``.

    Latency: ``ceil(width / 2) + 1`` cycles from ``start`` to ``done``; one root at a time.
    ``start`` is sampled when ``busy`` is low; ``root`` is valid while ``done`` is high (one cycle)
    and stays until the next ``start``.
    """

    def __init__(self, width: int):
        self.width = check_int("width", width, 1)
        self.iters = (width + 1) // 2
        super().__init__({
            "start": In(1),
            "value": In(width),
            "busy": Out(1),
            "done": Out(1),
            "root": Out(self.iters + 1),
        })

    def elaborate(self, platform):
        m = Module()
        x = Signal(self.width + 1)
        res = Signal(self.width + 1)
        bit = Signal(self.width + 1)
        cnt = Signal(range(self.iters + 1))
        trial = res + bit
        m.d.sync += self.done.eq(0)
        m.d.comb += self.root.eq(res)
        with m.If(~self.busy):
            with m.If(self.start):
                m.d.sync += [
                    x.eq(self.value),
                    res.eq(0),
                    bit.eq(1 << (2 * (self.iters - 1))),
                    cnt.eq(self.iters),
                    self.busy.eq(1),
                ]
        with m.Else():
            with m.If(x >= trial):
                m.d.sync += [x.eq(x - trial), res.eq((res >> 1) + bit)]
            with m.Else():
                m.d.sync += res.eq(res >> 1)
            m.d.sync += [bit.eq(bit >> 2), cnt.eq(cnt - 1)]
            with m.If(cnt == 1):
                m.d.sync += [self.busy.eq(0), self.done.eq(1)]
        return m
