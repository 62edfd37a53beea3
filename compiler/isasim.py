"""Reference executor of core programs (NumPy): the semantics of :class:`~.isa.Instr`, row by row.

It runs a compiled :class:`~.program.Program` on one image exactly as the core's instructions are
defined (the same memories, rows, lanes, masks and word widths), so that the compiler is checked
against the golden SNN without hardware, and the RTL is checked against it instruction by
instruction. Word overflow is an error here (the compiler's width checks make it impossible).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..model.intops import LayerNormParams, SoftmaxParams, int_layernorm, int_softmax
from .isa import SRC_SCODES, SRC_SPIKES, Instr, Op
from .program import Program

__all__ = ["IsaResult", "run_program"]


@dataclass
class IsaResult:
    logits: np.ndarray  # (classes,) int64
    settle_step: int  # -1 if t_max was reached first
    steps: int
    counts: np.ndarray  # per counter
    trace: list[tuple[int, int, np.ndarray]]  # (step, S row, spikes (P,) int8) per NEURON row


def _check(name: str, a: np.ndarray, bits: int, signed: bool = True) -> None:
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if a.size and (int(a.min()) < lo or int(a.max()) > hi):
        raise OverflowError(f"{name}: value outside the {bits}-bit word: [{int(a.min())}, {int(a.max())}]")


def run_program(prog: Program, rows_in: np.ndarray) -> IsaResult:
    """Execute ``prog`` on one image given as its ``I`` rows (``image_rows``)."""
    p = prog.params
    P = p.lanes
    lane = np.arange(P)
    mem = {
        k: np.zeros((getattr(p, a), P), dtype=np.int64)
        for k, a in (
            ("D", "d_depth"),
            ("V", "n_depth"),
            ("T", "n_depth"),
            ("S", "s_depth"),
            ("Q", "q_depth"),
            ("W", "w_depth"),
            ("I", "i_depth"),
        )
    }
    for k, img in prog.images.items():
        mem[k][: img.shape[0]] = img
    Dm, V, Tm, Sm, Q, W, I = (mem[k] for k in "DVTSQWI")
    counts = np.zeros(p.counters, dtype=np.int64)
    trace: list[tuple[int, int, np.ndarray]] = []
    t = 0
    fired = False
    settle = -1
    pc = 0
    out_logits = None
    while True:
        ins: Instr = prog.instrs[pc]
        pc += 1
        op = ins.op
        if op == Op.END:
            break
        if op == Op.LOADIN:
            if rows_in.shape != (ins.count, P):
                raise ValueError(f"LOADIN expects {ins.count} rows of {P} lanes, got {rows_in.shape}")
            I[: ins.count] = rows_in
            t, fired, settle = 0, False, -1
        elif op == Op.NRESET:
            for n in range(ins.nvec):
                for c in range(ins.nch):
                    r = n * ins.nch + c
                    V[ins.vbase + r] = 0 if ins.lif else Q[ins.pbase + c] >> 1
                    Tm[ins.tbase + r] = 0
        elif op == Op.COPY:
            dst = Sm if ins.mem else Dm
            take = not ins.zero and (not ins.t0 or t == 0)
            for i in range(ins.count):
                if not take:
                    dst[ins.dbase + i] = 0
                    continue
                v = Dm[ins.sbase + i] >> ins.imm  # NumPy's >> on int64 is arithmetic, as the core's
                if ins.has_bias:
                    v = v + Dm[ins.bbase + i]
                _check("copy", v, p.dw)
                dst[ins.dbase + i] = v
        elif op == Op.NEURON:
            for n in range(ins.nvec):
                for c in range(ins.nch):
                    r = n * ins.nch + c
                    ca = ins.dbase + n * ins.dstride + c
                    cur = Dm[ca].copy()
                    if ins.has_bias and (t == 0 or ins.lif):
                        cur = cur + Dm[ins.bbase + c]
                    th = Q[ins.pbase + c]
                    if ins.lif:
                        # SPEC §8 LIF: τ = 2 halving with floor, hard reset; the tracer is unused
                        h = (V[ins.vbase + r] + cur) >> 1
                        s = (h >= th).astype(np.int64)
                        V[ins.vbase + r] = np.where(s == 1, 0, h)
                        Sm[ins.sbase + r] = s
                        if not ins.keep:
                            Dm[ca] = 0
                        _check("membrane", V[ins.vbase + r], p.vw)
                        counts[ins.tid] += int(np.count_nonzero(s))
                        fired |= bool(np.any(s))
                        trace.append((t, ins.sbase + r, s.astype(np.int8)))
                        continue
                    h = V[ins.vbase + r] + cur
                    s_old = Tm[ins.tbase + r]
                    s = np.where((h >= th) & (s_old < ins.qp), 1, np.where((h < 0) & (s_old > ins.qn), -1, 0))
                    V[ins.vbase + r] = h - s * th
                    Tm[ins.tbase + r] = s_old + s
                    Sm[ins.sbase + r] = s
                    if not ins.keep:
                        Dm[ca] = 0
                    _check("membrane", V[ins.vbase + r], p.vw)
                    counts[ins.tid] += int(np.count_nonzero(s))
                    fired |= bool(np.any(s))
                    trace.append((t, ins.sbase + r, s.astype(np.int8)))
        elif op == Op.AW:
            if ins.t0 and t != 0:
                continue
            M = Dm if ins.msrc else W
            for n in range(ins.nvec):
                for c in range(ins.c0, ins.c1):
                    srow = (Sm if ins.src == SRC_SPIKES else I)[ins.sbase + n * ins.sstride + c]
                    for l in range(P):
                        j = c * P + l
                        if not (ins.lo <= j < ins.hi) or srow[l] == 0:
                            continue
                        for sig in _events(int(srow[l]), ins.src, p.iw):
                            for e in range(ins.d0, ins.d1):
                                ch = e * P + lane
                                m = (ch >= ins.dlo) & (ch < ins.dhi)
                                da = ins.dbase + n * ins.dstride + e
                                add = sig * M[ins.mbase + (j - ins.joff) * ins.mstride + e]
                                Dm[da] = np.where(m, Dm[da] + add, Dm[da])
                                _check("accumulator", Dm[da], p.dw)
        elif op == Op.SPKADD:
            for n in range(ins.nvec):
                for c in range(ins.nch):
                    da = ins.dbase + n * ins.dstride + c
                    Dm[da] = Dm[da] + ins.imm * Sm[ins.sbase + n * ins.nch + c]
                    _check("accumulator", Dm[da], p.dw)
        elif op == Op.TRANS:
            for m in range(ins.nvec):
                for c in range(ins.nch):
                    srow = Sm[ins.sbase + m * ins.nch + c]
                    for l in range(P):
                        j = c * P + l
                        if not (ins.lo <= j < ins.hi) or srow[l] == 0:
                            continue
                        a = ins.dbase + (j - ins.lo) * ins.dstride + m // P
                        Dm[a, m % P] += srow[l]
                        Sm[ins.obase + (j - ins.lo) * ins.dstride + m // P, m % P] = srow[l]
        elif op == Op.SROW:
            for r in range(ins.count):
                vec = []
                for c in range(ins.c0, ins.c1):
                    ch = c * P + lane
                    srow = Sm[ins.sbase + r * ins.sstride + c]
                    vec.append(np.where((ch >= ins.lo) & (ch < ins.hi), srow, 0))
                if not any(v.any() for v in vec):
                    continue
                col = r + ins.joff
                for n in range(ins.nvec):
                    a = Dm[ins.mbase + n * ins.mstride + col // P, col % P]
                    for k, c in enumerate(range(ins.c0, ins.c1)):
                        da = ins.dbase + n * ins.dstride + c
                        Dm[da] = Dm[da] + a * vec[k]
                        _check("accumulator", Dm[da], p.dw)
        elif op in (Op.LN, Op.SMX):
            for n in range(ins.nvec):
                rows = [ins.xbase + n * ins.nch + c for c in range(ins.nch)]
                drows = [ins.sbase + n * ins.nch + c for c in range(ins.nch)]
                if ins.running:  # S is the running input: changed where it differs from X
                    delta = np.concatenate([Dm[b] - Dm[a] for a, b in zip(rows, drows, strict=True)])
                else:
                    delta = np.concatenate([Dm[a] for a in drows])
                for a, b in zip(rows, drows, strict=True):
                    Dm[a] = Dm[b].copy() if ins.running else Dm[a] + Dm[b]
                    _check("running sum", Dm[a], p.dw)
                if t != 0 and not delta.any():
                    continue
                counts[ins.tid] += 1
                x = np.concatenate([Dm[a] for a in rows])[: ins.dim]
                if op == Op.LN:
                    g = np.concatenate([Q[ins.pbase + c] for c in range(ins.nch)])[: ins.dim]
                    b = np.concatenate([Q[ins.bbase + c] for c in range(ins.nch)])[: ins.dim]
                    y = int_layernorm(x, g, b, LayerNormParams(E=ins.imm, K=p.ln_K, P=p.ln_P))
                else:
                    y = int_softmax(x, SoftmaxParams(C=ins.imm, G=p.sm_G, H=p.sm_H, F=p.sm_F, P=p.sm_P))
                yfull = np.zeros(ins.nch * P, dtype=np.int64)
                yfull[: ins.dim] = y
                for c in range(ins.nch):
                    ya = ins.ybase + n * ins.nch + c
                    Dm[ins.obase + n * ins.nch + c] = yfull[c * P : (c + 1) * P] - Dm[ya]
                    Dm[ya] = yfull[c * P : (c + 1) * P]
                    _check("normalized output", Dm[ya], p.dw)
        elif op == Op.STEP:
            if not ins.fixed and not fired and t > 0 and settle < 0:
                settle = t
            if settle >= 0 or t + 1 >= ins.imm:
                continue
            t += 1
            fired = False
            pc = prog.step_start
        elif op == Op.OUT:
            out_logits = np.concatenate([Dm[ins.dbase + i] for i in range(ins.count)])[: prog.classes]
        else:
            raise ValueError(f"unknown opcode {op!r}")
    if out_logits is None:
        raise RuntimeError("the program ended without an OUT instruction")
    return IsaResult(out_logits, settle, t + 1, counts, trace)


def _events(v: int, src: int, iw: int) -> list[int]:
    """Signed weights of the events of one input: ``±1`` for a spike, one ``±2^b`` per set bit of a code."""
    if src == SRC_SPIKES:
        return [v]
    u = v & ((1 << iw) - 1)
    out = []
    for b in range(iw):
        if u >> b & 1:
            out.append(-(1 << b) if (src == SRC_SCODES and b == iw - 1) else 1 << b)
    return out
