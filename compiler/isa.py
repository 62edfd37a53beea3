"""The core's instruction set: what each instruction computes, on which memories.

Every memory of the core is a stack of *rows* of ``P`` lanes (``P`` = :attr:`CoreParams.lanes`):

========  ===========================================  =========================================
memory    lane contents                                 used for
========  ===========================================  =========================================
``D``     signed ``dw``-bit integers                    currents, biases, running sums, logits
``V``     signed ``vw``-bit membranes                   ST-BIF or LIF membranes ``V`` of every site
``T``     signed ``tw``-bit tracers                     ST-BIF tracers ``S`` of every site
``S``     ternary spikes (2 bits; binary for LIF)       spikes of the current step; ``kᵀ`` buffers
``Q``     unsigned ``pw``-bit parameters (``Γ`` and     per-channel Θ, LayerNorm Γ and B
          ``B`` stored as two's complement)
``W``     int8 weights                                  AW matrices, transposed: row = input
``I``     ``iw``-bit image codes                        the image of the current inference
========  ===========================================  =========================================

A site of ``nvec`` vectors of ``C`` channels takes ``nvec · ceil(C / P)`` rows: vector ``n``,
chunk ``c`` (channels ``c·P … c·P + P − 1``) is row ``n · ceil(C / P) + c``; lanes past ``C`` are
padding and stay 0. The same row numbers address a site's membranes (``V``), tracers (``T``)
and spikes (``S``).

Addressing conventions of the fields (every field is a non-negative integer unless noted):
``*base`` a first row, ``*stride`` rows between consecutive vectors, ``[c0, c1)`` a chunk range,
``[lo, hi)`` an absolute channel range (lane ``l`` of chunk ``c`` is channel ``c·P + l``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import IntEnum

__all__ = [
    "Op",
    "Instr",
    "CoreParams",
    "INSTR_FIELDS",
    "SRC_SPIKES",
    "SRC_CODES",
    "SRC_SCODES",
    "instr_fields",
    "encode",
    "OP_BITS",
]


class Op(IntEnum):
    """Instruction opcodes (semantics in :class:`Instr`)."""

    END = 0
    LOADIN = 1
    NRESET = 2
    COPY = 3
    NEURON = 4
    AW = 5
    SPKADD = 6
    TRANS = 7
    SROW = 8
    LN = 9
    SMX = 10
    STEP = 11
    OUT = 12


#: AW source kinds: ternary spikes from ``S``; unsigned or signed (two's complement) codes from ``I``
SRC_SPIKES, SRC_CODES, SRC_SCODES = 0, 1, 2


@dataclass
class Instr:
    """One instruction. Fields not used by an opcode are 0.

    Semantics (``t`` is the current time step, ``row(X, a)`` row ``a`` of memory ``X``):

    ``END``
        The inference is over: the core waits for the next image and restarts at instruction 0.
    ``LOADIN count``
        Take ``count`` beats from the input stream into ``I`` rows ``0 … count−1``; set ``t = 0``.
    ``NRESET nvec, nch, vbase, tbase, pbase, lif``
        For every row ``r = n·nch + c``: ``V[vbase+r] = Θ >> 1`` (``V = 0`` with ``lif``, the LIF
        reset of SPEC §8) and ``T[tbase+r] = 0``, with ``Θ = Q[pbase + c]``.
    ``COPY dbase, sbase, count, mem, zero, t0, imm, has_bias, bbase``
        For ``i < count``: ``X[dbase+i] = (D[sbase+i] >> imm) + b`` (arithmetic shift; ``b`` is
        ``D[bbase+i]`` if ``has_bias``, else 0) if ``not zero and (not t0 or t == 0)``, else 0;
        ``X`` is ``D`` (``mem = 0``) or ``S`` (``mem = 1``, zero only). With ``imm = 0`` and no
        bias it is a plain copy; the shift and the bias are the requantization
        ``((acc · m) >> S) + B`` of the spike-driven transformer's analog stem (SPEC §8).
    ``NEURON nvec, nch, dbase, dstride, bbase, has_bias, vbase, tbase, pbase, sbase, qn, qp, tid``
        ST-BIF step of every row ``r = n·nch + c``: ``I = D[dbase + n·dstride + c]`` (plus
        ``D[bbase + c]`` at ``t = 0`` if ``has_bias``), ``Θ = Q[pbase + c]``; ``V, T`` at
        ``vbase + r``, ``tbase + r`` updated by SPEC §2; spikes to ``S[sbase + r]``; the current
        row is cleared to 0. Counter ``tid`` counts the nonzero spikes; every row goes out on the
        trace port.
        With ``lif`` it is the binary LIF step of SPEC §8 instead (τ = 2, hard reset):
        ``h = (V + I + b) >> 1`` with ``b = D[bbase + c]`` at *every* step if ``has_bias`` (the
        BatchNorm shift of each step's pre-activation); spike ``+1`` if ``h ≥ Θ``; ``V = 0`` after
        a spike, else ``h``; ``T``, ``qn``, ``qp`` unused. With ``keep`` the current row is left as
        it is (a membrane-shortcut residual read by its LIF, SPEC §8), else cleared.
    ``AW nvec, src, sbase, sstride, c0, c1, lo, hi, joff, msrc, mbase, mstride,``
    ``dbase, dstride, d0, d1, dlo, dhi, t0``
        Event-driven accumulation (SPEC §3/§4). For vector ``n`` and source rows
        ``sbase + n·sstride + c`` (``c0 ≤ c < c1``), every nonzero input of channel ``j`` in
        ``[lo, hi)`` is an event: a spike ``σ = ±1`` (``src = SRC_SPIKES``), or for an image code
        one event per set bit ``b`` with ``σ = ±2^b`` (``SRC_CODES``; ``SRC_SCODES``: the top bit
        of the ``iw``-bit code counts ``−2^b``). Each event adds ``σ · M[mbase + (j − joff)·mstride + e]``
        into ``D[dbase + n·dstride + e]`` for ``d0 ≤ e < d1``, only on lanes whose channel
        ``e·P + l`` is in ``[dlo, dhi)``; ``M`` is ``W`` (``msrc = 0``) or ``D`` (``msrc = 1``).
        With ``t0`` the instruction runs at ``t = 0`` only.
    ``SPKADD nvec, nch, sbase, dbase, dstride, imm``
        ``D[dbase + n·dstride + c] += imm · S[sbase + n·nch + c]`` for every row.
    ``TRANS nvec, nch, sbase, lo, hi, dbase, dstride, obase``
        Transpose-accumulate (the ``k`` operand of SESA): every spike ``σ`` of channel ``j`` in
        ``[lo, hi)`` of vector ``m`` (rows ``sbase + m·nch + c``) adds ``σ`` to lane ``m mod P``
        of ``D[dbase + (j − lo)·dstride + m div P]`` and writes ``σ`` to the same lane of
        ``S[obase + (j − lo)·dstride + m div P]``.
    ``SROW count, nvec, sbase, sstride, c0, c1, lo, hi, mbase, mstride, joff, dbase, dstride``
        Scalar times spike vector (the second SESA term). For every ``r < count`` whose spike
        vector ``S[sbase + r·sstride + c]`` (``c0 ≤ c < c1``, lanes of channels in ``[lo, hi)``)
        is not all zero, and every ``n < nvec``: with ``a = lane (r + joff) mod P`` of
        ``D[mbase + n·mstride + (r + joff) div P]``, add ``a · spike`` lane-wise into
        ``D[dbase + n·dstride + c]``. ``joff + count ≤`` :attr:`CoreParams.srow_columns`.
    ``LN nvec, nch, dim, xbase, sbase, ybase, obase, pbase, bbase, imm, tid``
        Differential LayerNorm (SPEC §5) of ``nvec`` rows of ``dim`` channels: ``X += ΔU``
        (``X`` at ``xbase``, ``ΔU`` at ``sbase``, both ``n·nch + c``); a row whose ``ΔU`` is not
        all zero, or every row at ``t = 0``, is recomputed with ``Γ = Q[pbase + c]``,
        ``B = Q[bbase + c]``, ``E = imm``: ``y − Y_prev`` goes to ``D[obase + …]`` and ``y`` to
        ``Y_prev`` (``ybase``). Counter ``tid`` counts recomputed rows.
    ``SMX nvec, nch, dim, xbase, sbase, ybase, obase, imm, tid, running``
        Differential softmax, the same with ``int_softmax`` and ``C = imm``. With ``running`` (LN
        too) the rows at ``sbase`` are the running input itself, not its change: ``X = S``, and a
        row is recomputed when ``S ≠ X`` before the copy (the same rows as ``ΔU = S − X ≠ 0``), so
        the passes that accumulate the input never have to clear it.
    ``STEP imm``
        End of a time step: if no spike fired in it and ``t > 0`` the run has settled at ``t``;
        if it settled or ``t + 1 == imm`` (``t_max``) go on with the next instruction, else
        ``t += 1`` and jump back to the first instruction after the ``STEP``'s loop start
        (:attr:`Program.step_start`). With ``fixed`` there is no quiescence test: the run takes
        exactly ``imm`` steps and reports no settle step (the spike-driven transformer re-injects
        its stem every step, SPEC §8, so a silent step does not mean a settled network).
    ``OUT dbase, count``
        Send rows ``D[dbase … dbase+count−1]`` (the logits), then the counters and the run status
        on the output stream.
    """

    op: Op
    nvec: int = 0
    nch: int = 0
    count: int = 0
    dim: int = 0
    src: int = 0
    sbase: int = 0
    sstride: int = 0
    c0: int = 0
    c1: int = 0
    lo: int = 0
    hi: int = 0
    joff: int = 0
    msrc: int = 0
    mbase: int = 0
    mstride: int = 0
    dbase: int = 0
    dstride: int = 0
    d0: int = 0
    d1: int = 0
    dlo: int = 0
    dhi: int = 0
    bbase: int = 0
    has_bias: int = 0
    vbase: int = 0
    tbase: int = 0
    pbase: int = 0
    xbase: int = 0
    ybase: int = 0
    obase: int = 0
    qn: int = 0
    qp: int = 0
    imm: int = 0
    tid: int = 0
    mem: int = 0
    zero: int = 0
    t0: int = 0
    lif: int = 0
    keep: int = 0
    running: int = 0
    fixed: int = 0
    note: str = field(default="", compare=False)

    def listing(self) -> str:
        """One readable line: opcode, nonzero fields, note."""
        parts = [f"{f.name}={getattr(self, f.name)}" for f in INSTR_FIELDS if getattr(self, f.name)]
        s = f"{self.op.name:<7}" + " ".join(parts)
        return f"{s:<100} ; {self.note}" if self.note else s


INSTR_FIELDS = tuple(f for f in fields(Instr) if f.name not in ("op", "note"))


@dataclass(frozen=True)
class CoreParams:
    """Generation parameters of a core: its lanes, memory sizes and word widths.

    A model runs on a core when every region fits the memories and every bound of its width
    analysis fits the words (:func:`~equispike.compiler.program.compile_artifact` checks both);
    the core's logic depends on these parameters only, never on the model.
    """

    lanes: int = 16
    dw: int = 32  # D words
    vw: int = 24  # membranes
    tw: int = 9  # tracers
    pw: int = 24  # parameters (Θ, Γ, B)
    iw: int = 8  # image codes
    d_depth: int = 4096  # D rows, both banks
    # D's first bank, rows 0 … d_split − 1: the operands read through port B (biases, running sums,
    # ΔU, softmax inputs); every instruction reads its two D rows of a cycle from different banks,
    # so each bank needs one read and one write port and maps onto block RAM once
    d_split: int = 2048
    n_depth: int = 4096  # V, T (and the site part of S)
    s_depth: int = 4096
    q_depth: int = 256
    w_depth: int = 4096
    i_depth: int = 64
    prog_depth: int = 256
    max_dim: int = 256  # LayerNorm row length
    max_n: int = 256  # softmax row length
    ln_K: int = 16
    ln_P: int = 10
    sm_G: int = 6
    sm_H: int = 16
    sm_F: int = 15
    sm_P: int = 12
    cw: int = 32  # softmax C
    ew: int = 40  # LayerNorm E
    counters: int = 64
    count_width: int = 32
    norm_units: int = 1  # row units of each kind (LayerNorm, softmax) working on rows in turn

    @property
    def srow_columns(self) -> int:
        """Scalar columns an ``SROW`` may address (``joff + count``): its active-row flags are kept
        per column, one bit each, for the longer of a head's channels (``max_dim``) and the tokens
        (``max_n``)."""
        return max(self.max_dim, self.max_n)

    def field_width(self, name: str) -> int:
        """Bits of an instruction field in this core."""
        addr = max(self.d_depth, self.n_depth, self.s_depth, self.q_depth, self.w_depth, self.i_depth)
        wide = {"imm": max(self.cw, self.ew, 32), "qn": 10, "qp": 10}
        one = {
            "src": 2, "msrc": 1, "has_bias": 1, "mem": 1, "zero": 1, "t0": 1, "lif": 1, "keep": 1, "fixed": 1,
            "running": 1,
        }
        if name in wide:
            return wide[name]
        if name in one:
            return one[name]
        if name == "tid":
            return max(1, (self.counters - 1).bit_length())
        return max(1, addr.bit_length())


#: bits of the opcode field
OP_BITS = 4
#: fields that hold two's-complement values
SIGNED_FIELDS = ("qn", "qp")


def instr_fields(params: CoreParams) -> list[tuple[str, int, bool]]:
    """(name, width, signed) of every instruction field, LSB first (the opcode first)."""
    out = [("op", OP_BITS, False)]
    for f in INSTR_FIELDS:
        out.append((f.name, params.field_width(f.name), f.name in SIGNED_FIELDS))
    return out


def encode(ins: Instr, params: CoreParams) -> int:
    """The instruction word (an unsigned integer) of ``ins`` in a core with ``params``."""
    word, pos = 0, 0
    for name, width, is_signed in instr_fields(params):
        v = int(getattr(ins, name))
        lo, hi = (-(1 << (width - 1)), (1 << (width - 1)) - 1) if is_signed else (0, (1 << width) - 1)
        if not lo <= v <= hi:
            raise ValueError(f"instruction field {name} = {v} does not fit {width} bits ({ins.listing()})")
        word |= (v & ((1 << width) - 1)) << pos
        pos += width
    return word
