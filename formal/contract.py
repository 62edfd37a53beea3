"""Formal proof of the RFC 61 stream rules on a block's output stream, for every RTL block."""

from __future__ import annotations

from collections.abc import Callable

from amaranth.asserts import AnySeq
from amaranth.hdl import Assume, Cover, Elaboratable, Module, ResetSignal, Signal, Value
from amaranth.lib import wiring

from ._shadow import assert_stream_rules, assume_stream_rules

__all__ = ["StreamContractProof", "HoldOnlyOnce", "contract_blocks"]


class StreamContractProof(Elaboratable):
    """``dut.o_stream`` follows the RFC 61 rules whatever the block's inputs do.

    Every input port of the component (its stream's ``valid``/payload, ``o_stream.ready``,
    ``clear``, configuration ports) is free every cycle; ``assume`` may add the block's input
    preconditions (a callable ``(module, dut) -> None`` adding ``Assume`` statements). Asserted:
    once ``o_stream.valid`` is high without ``ready``, it stays high with the same payload in
    the next cycle, unless ``clear`` (when the block has it) or reset restarts the block.
    A ``Cover`` shows that the block does deliver a beat and does hold one under back-pressure.
    """

    def __init__(self, dut: wiring.Component, *, assume: Callable | None = None,
                 free_reset: bool = False):
        self.dut = dut
        self.assume = assume
        self.free_reset = bool(free_reset)

    def elaborate(self, platform):
        m = Module()
        dut = self.dut
        m.submodules.dut = dut
        for _path, member, value in dut.signature.flatten(dut):
            if member.flow == wiring.In:
                m.d.comb += Value.cast(value).eq(AnySeq(len(Value.cast(value))))
        if not self.free_reset:
            m.d.comb += Assume(~ResetSignal())
        if self.assume is not None:
            self.assume(m, dut)
        restart = getattr(dut, "clear", None)
        ost = dut.o_stream
        assert_stream_rules(m, ost, f"{type(dut).__name__}.o_stream", restart=restart)
        held = Signal()
        m.d.sync += held.eq(ost.valid & ~ost.ready)
        m.d.comb += [Cover(ost.valid & ost.ready), Cover(held & ost.valid & ost.ready)]
        return m


class HoldOnlyOnce(wiring.Component):
    """A deliberately broken producer (test fixture): it offers a counter value, and when the
    consumer is not ready it moves on to the next value instead of holding the beat. Its
    stream-rule proof must fail."""

    def __init__(self):
        from amaranth.lib import stream
        from amaranth.lib.wiring import In, Out
        super().__init__({"o_stream": Out(stream.Signature(4)), "go": In(1)})

    def elaborate(self, platform):
        m = Module()
        count = Signal(4)
        m.d.comb += [self.o_stream.valid.eq(self.go | (count != 0)),
                     self.o_stream.payload.eq(count)]
        with m.If(self.o_stream.valid):
            m.d.sync += count.eq(count + 1)
        return m


def contract_blocks() -> dict[str, Callable[[], tuple[wiring.Component, Callable | None]]]:
    """Small configurations of every block with an output stream: name -> factory returning
    ``(component, assume)``."""
    import numpy as np

    from ..model.intops import LayerNormParams, SoftmaxParams
    from ..rtl.attention import SDSAUnit, SpikeProductUnit
    from ..rtl.engine import SpikeAdditionEngine, ZeroVectorExpander, required_acc_width
    from ..rtl.layernorm_unit import LayerNormUnit
    from ..rtl.neuron import NeuronArray
    from ..rtl.softmax_unit import SoftmaxUnit

    def neuron():
        return NeuronArray(lanes=2, n_neurons=3, current_width=3, membrane_width=6, levels=4,
                           theta=3, qn=-2, qp=1), None

    def neuron_lif():
        return NeuronArray(lanes=2, n_neurons=3, mode="lif", current_width=3, membrane_width=6,
                           theta=3), None

    def engine():
        w = np.array([[-128, 5, 7], [3, -9, 127]])
        b = np.array([4, 0, -2])
        return SpikeAdditionEngine(w, b, lanes=2, n_vectors=2,
                                   acc_width=required_acc_width(w, b)), None

    def engine_dense():
        w = np.array([[-128, 5, 7], [3, -9, 127]])
        return SpikeAdditionEngine(w, None, lanes=2, n_vectors=2, compact_zero_vectors=False,
                                   acc_width=required_acc_width(w)), None

    def expander():
        # (its output valid is its input valid: the rules hold when its producer keeps them)
        return ZeroVectorExpander(lanes=2, acc_width=6, chunks=2), \
            lambda m, dut: assume_stream_rules(m, dut.i_stream, "expander.i_stream")

    def softmax():
        return SoftmaxUnit(3, 2, SoftmaxParams(C=700_000), 6, 6), None

    def layernorm():
        return LayerNormUnit(3, 2, LayerNormParams(E=3, K=16, P=10), [1 << 16, -(1 << 16), 70000],
                             [5, -3, 0], 6, 7), None

    def spike_product():
        return SpikeProductUnit(1, 3, 2, 3, True, 4, 4), None

    def sdsa1():
        return SDSAUnit(1, 2, 4), None

    def sdsa3():
        return SDSAUnit(3, 2, 4, 2), None

    return {"neuron": neuron, "neuron_lif": neuron_lif, "engine": engine,
            "engine_dense": engine_dense, "expander": expander, "softmax": softmax,
            "layernorm": layernorm, "spike_product": spike_product, "sdsa1": sdsa1,
            "sdsa3": sdsa3}
