"""Compile an artifact into a core program: memory layout, images, instructions (SPEC §7, §9).

The program runs one inference: load the image, reset every site, then one pass of the step body
per time step (the SPEC §7 operators in network order, SPEC §9 run semantics), then send the logits.
Every region's size follows the model; every word width is checked against the width analysis
(:func:`~equispike.model.widths.analyze`), so a model that does not fit a core is rejected with
the region or bound named, never truncated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from typing import Any

import numpy as np

from ..model.artifact import ViTArtifact
from ..model.energy import layernorm_row_cost, softmax_row_cost
from ..model.widths import analyze, signed_bits
from .isa import SRC_CODES, SRC_SCODES, SRC_SPIKES, CoreParams, Instr, Op

__all__ = ["CompileError", "Region", "SiteMap", "Program", "compile_artifact", "fit_params", "MEMORIES"]

#: memory name -> the CoreParams depth attribute
MEMORIES = {
    "D": "d_depth",
    "V": "n_depth",
    "T": "n_depth",
    "S": "s_depth",
    "Q": "q_depth",
    "W": "w_depth",
    "I": "i_depth",
}


class CompileError(ValueError):
    """The model does not fit the core (a region or a bound is named)."""


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class Region:
    mem: str
    base: int
    rows: int
    note: str


@dataclass(frozen=True)
class SiteMap:
    """Where a site lives: rows ``base … base + nvec·nch − 1`` of ``V``/``T``/``S``."""

    name: str
    base: int
    nvec: int
    nch: int
    channels: int
    shape: tuple[int, ...]  # the golden record's per-image shape


@dataclass
class Program:
    params: CoreParams
    instrs: list[Instr]
    step_start: int
    regions: dict[str, Region]
    images: dict[str, np.ndarray]  # memory -> (rows, lanes) int64 initial contents
    sites: dict[str, SiteMap]
    counters: dict[int, str]  # tid -> name
    ac_fanout: dict[int, int]  # tid -> ACs per counted spike (SPEC §10)
    row_costs: dict[int, tuple[int, int]]  # tid -> (MACs, ACs) per recomputed row
    fixed_macs: int  # the analog first layer, once per image
    input_rows: int
    logits_base: int
    logits_rows: int
    classes: int
    t_max: int
    embed_dim: int = 1  # row width of the patch embedding (dims.dim)
    # engine events of the analog first layer (its codes); None: fixed_macs // embed_dim
    embed_events: int | None = None
    d_bank_rows: tuple[int, int] = (0, 0)  # D rows the program uses in bank 0 and in bank 1
    widths: dict[str, tuple[int, int]] = field(default_factory=dict)  # word -> (needed, available)

    def listing(self) -> str:
        """Readable program: memory map, then one line per instruction."""
        out = ["; memory map"]
        for name, r in sorted(self.regions.items(), key=lambda kv: (kv[1].mem, kv[1].base)):
            out.append(f";   {r.mem}[{r.base:5d} +{r.rows:5d}]  {name}  {r.note}")
        out.append("; word widths (needed / available)")
        for k, (need, have) in self.widths.items():
            out.append(f";   {k:<10} {need:3d} / {have:3d}")
        out.append("; program")
        for i, ins in enumerate(self.instrs):
            mark = ">" if i == self.step_start else " "
            out.append(f"{i:4d}{mark} {ins.listing()}")
        return "\n".join(out) + "\n"

    def energy(self, counts: np.ndarray) -> dict[str, int | float]:
        """SPEC §10 counts and energy (pJ) of one inference from the core's event counters."""
        from ..model.vit import AC_PJ, MAC_PJ

        acs = sum(int(counts[t]) * f for t, f in self.ac_fanout.items())
        macs = self.fixed_macs
        for t, (m, a) in self.row_costs.items():
            macs += int(counts[t]) * m
            acs += int(counts[t]) * a
        return {"acs": acs, "macs": macs, "energy_pj": MAC_PJ * macs + AC_PJ * acs}

    def ideal_cycles(self, counts: np.ndarray) -> int:
        """SPEC §11 ideal cycles of one inference: ``Σ events · ceil(row_width / P)``.

        Events are the counted spikes that drive an engine pass (AW rows of ``n_out``, SESA rows of
        the running-sum matrices), plus the analog patch embedding's codes (each a row of ``dim``)
        once at ``t = 0``.
        """
        P = self.params.lanes
        events = self.fixed_macs // self.embed_dim if self.embed_events is None else self.embed_events
        ideal = events * _cdiv(self.embed_dim, P)
        for t, f in self.ac_fanout.items():
            ideal += int(counts[t]) * _cdiv(f, P)
        return ideal


def _rows(a: np.ndarray, P: int) -> np.ndarray:
    """``(n, C)`` -> ``(n·ceil(C/P), P)`` rows, zero-padded lanes."""
    a = np.asarray(a, dtype=np.int64)
    n, C = a.shape
    ch = _cdiv(C, P)
    out = np.zeros((n, ch * P), dtype=np.int64)
    out[:, :C] = a
    return out.reshape(n * ch, P)


class _Alloc:
    """The layout both compilers build: each memory's next free row, the regions and the images.

    The ViT (:func:`compile_artifact`) and the sdt (:func:`~.sdt_program.compile_sdt`) programs
    place their weights, their image region and their D banks the same way; the methods below are
    those shared parts, so the two layouts cannot drift apart.
    """

    def __init__(self, params: CoreParams):
        self.params = params
        self.next = dict.fromkeys(MEMORIES, 0)
        self.regions: dict[str, Region] = {}
        # memory -> (base row, rows) parts of its initial contents, written by :meth:`images`
        self.parts: dict[str, list[tuple[int, np.ndarray]]] = {m: [] for m in MEMORIES}

    def take(self, mem: str, name: str, rows: int, note: str = "") -> int:
        base = self.next[mem]
        if mem in ("V", "T"):
            raise AssertionError("V/T rows are allocated with their S rows")
        self.next[mem] = base + rows
        self.regions[name] = Region(mem, base, rows, note)
        return base

    def put(self, mem: str, base: int, rows: np.ndarray) -> None:
        """Initial contents ``rows`` of ``mem`` from row ``base``."""
        self.parts[mem].append((base, rows))

    def vector(self, mem: str, name: str, v: np.ndarray, note: str) -> int:
        """Lays out a vector (a bias, a per-channel constant) in ``mem`` as one row of
        ``ceil(size/P)`` chunks, zero-padded lanes; returns its base."""
        base = self.take(mem, name, _cdiv(v.size, self.params.lanes), note)
        self.put(mem, base, _rows(np.asarray(v).reshape(1, -1), self.params.lanes))
        return base

    def weights(self, name: str, w: np.ndarray, note: str) -> int:
        """Lays out a ``(n_out, n_in)`` matrix in ``W``: transposed, row = input channel, chunks of
        outputs (the engine streams one input channel's outputs per spike); returns its base."""
        rows = _rows(np.asarray(w, dtype=np.int64).T, self.params.lanes)
        base = self.take("W", name, rows.shape[0], note)
        self.put("W", base, rows)
        return base

    def block_weights(self, T: dict[str, np.ndarray], depth: int, dim: int) -> dict[str, int]:
        """Lays out every block's ``qkv``, ``proj``, ``fc1``, ``fc2`` and then the ``head`` in ``W``.

        ``qkv`` is chunk-aligned: the q, k and v outputs each start on a chunk boundary
        (``(dim, 3·ceil(dim/P)·P)``), so the three LIF/ST-BIF sites read their currents as whole
        chunks. Returns name -> base row (``blocks.<i>.qkv`` …, ``head``).
        """
        P = self.params.lanes
        Dch = _cdiv(dim, P)
        wb: dict[str, int] = {}
        for i in range(depth):
            p = f"blocks.{i}."
            w = T[p + "qkv.weight"]  # (3D, D)
            wq = np.zeros((dim, 3 * Dch * P), dtype=np.int64)
            for k in range(3):
                wq[:, k * Dch * P : k * Dch * P + dim] = w[k * dim : (k + 1) * dim].T
            wb[p + "qkv"] = self.take("W", p + "qkv", dim * 3 * Dch, "qkv, q/k/v chunk-aligned")
            self.put("W", wb[p + "qkv"], wq.reshape(dim * 3 * Dch, P))
            for s in ("proj", "fc1", "fc2"):
                wb[p + s] = self.weights(p + s, T[p + s + ".weight"], s)
        wb["head"] = self.weights("head", T["head.weight"], "head")
        return wb

    def site(
        self, name: str, nvec: int, channels: int, shape: tuple[int, ...], theta: np.ndarray, note: str
    ) -> tuple[SiteMap, int]:
        """Lays out a neuron site: ``nvec · ceil(channels/P)`` rows of ``S`` (``V`` and ``T`` at the
        same rows) and its Θ row per channel in ``Q``; returns the site and the Θ rows' base."""
        P = self.params.lanes
        nch = _cdiv(channels, P)
        base = self.next["S"]
        self.next["S"] += nvec * nch
        self.regions[f"site.{name}"] = Region("S", base, nvec * nch, note)
        th = np.broadcast_to(np.asarray(theta, dtype=np.int64).reshape(-1), (channels,))
        trow = _rows(th.reshape(1, -1), P)
        # padding lanes: Θ = 1 with no input keeps V = 0 (an input-free neuron never fires)
        trow[np.arange(nch * P).reshape(nch, P) >= channels] = 1
        tbase = self.take("Q", f"theta.{name}", nch, "Θ per channel")
        self.put("Q", tbase, trow)
        return SiteMap(name, base, nvec, nch, channels, shape), tbase

    def image_region(self, rows: int) -> None:
        """Lays out the image codes in ``I``: ``rows`` rows (patch × ``ceil(patch_dim / P)``) from row 0."""
        self.regions["image"] = Region("I", 0, rows, "image codes: patch × patch_dim")
        self.next["I"] = rows

    def close_bank0(self) -> int:
        """Ends D bank 0 (the operands read through port B) and starts bank 1 at ``d_split``.

        Returns the rows bank 0 uses; raises :class:`CompileError` when they pass ``d_split``.
        """
        bank0_rows = self.next["D"]
        if bank0_rows > self.params.d_split:
            raise CompileError(
                f"memory D: bank 0 (the operands read through port B) needs {bank0_rows} rows, the core "
                f"has {self.params.d_split} (d_split)"
            )
        self.next["D"] = self.params.d_split
        return bank0_rows

    def need_rows(self, site_rows: int) -> dict[str, int]:
        """The rows each memory needs (``V`` and ``T`` the sites' ``site_rows``), checked against
        the core's depths: raises :class:`CompileError` naming the memory that does not fit."""
        need = {
            "D": self.next["D"],
            "V": site_rows,
            "T": site_rows,
            "S": self.next["S"],
            "Q": self.next["Q"],
            "W": self.next["W"],
            "I": self.next["I"],
        }
        for mem, rows in need.items():
            have = getattr(self.params, MEMORIES[mem])
            if rows > have:
                raise CompileError(
                    f"memory {mem}: the model needs {rows} rows, the core has {have} ({MEMORIES[mem]})"
                )
        return need

    def images(self, need_rows: dict[str, int]) -> dict[str, np.ndarray]:
        """Every memory's initial contents: ``need_rows[mem]`` rows, zero where nothing was put."""
        images = {}
        for mem, parts in self.parts.items():
            a = np.zeros((need_rows[mem], self.params.lanes), dtype=np.int64)
            for base, rows in parts:
                a[base : base + rows.shape[0]] = rows
            images[mem] = a
        return images


class _Counters:
    """The event counters of a program (SPEC §10): tid -> name, and what one count costs.

    A counter either counts spikes that each drive ``ac_fanout`` ACs (:attr:`fanout`) or rows a
    norm unit recomputes, each ``row_cost`` (MACs, ACs) (:attr:`row_costs`).
    """

    def __init__(self, params: CoreParams):
        self.limit = params.counters
        self.names: dict[int, str] = {}
        self.fanout: dict[int, int] = {}
        self.row_costs: dict[int, tuple[int, int]] = {}

    def __call__(self, name: str, ac_fanout: int = 0, row_cost: tuple[int, int] | None = None) -> int:
        tid = len(self.names)
        if tid >= self.limit:
            raise CompileError(f"the model needs more than {self.limit} event counters")
        self.names[tid] = name
        if row_cost is None:
            self.fanout[tid] = ac_fanout
        else:
            self.row_costs[tid] = row_cost
        return tid


def _src_slice(lo: int, hi: int, P: int) -> dict[str, int]:
    """The source fields of an engine pass (``AW``/``SROW``) that reads channels ``lo … hi − 1`` of
    each source row (one head's slice, or all ``hi`` from 0): the chunks that hold them and the
    lanes within."""
    return {"c0": lo // P, "c1": _cdiv(hi, P), "lo": lo, "hi": hi}


def _dst_slice(lo: int, hi: int, P: int) -> dict[str, int]:
    """The destination fields of an ``AW`` that writes channels ``lo … hi − 1`` of each row (one
    head's slice, or all ``hi`` from 0): the chunks that hold them and the lanes within."""
    return {"d0": lo // P, "d1": _cdiv(hi, P), "dlo": lo, "dhi": hi}


def _transpose_k(sk: SiteMap, spikes: int, ksum: int, tokens: int, P: int, note: str) -> list[Instr]:
    """Lays the step's k spikes out transposed (one spike row per channel, lanes = tokens) in the
    ``S`` rows at ``spikes`` and adds them to the running sum at ``ksum`` in ``D``: the attention's
    engine passes read k by channel. The spike rows are cleared first, as ``TRANS`` only sets."""
    Nch = _cdiv(tokens, P)
    return [
        Instr(Op.COPY, dbase=spikes, count=sk.channels * Nch, mem=1, zero=1, note="clear kᵀ spikes"),
        Instr(
            Op.TRANS,
            nvec=tokens,
            nch=sk.nch,
            sbase=sk.base,
            lo=0,
            hi=sk.channels,
            dbase=ksum,
            dstride=Nch,
            obase=spikes,
            note=note,
        ),
    ]


def _reset_sites(sites: dict[str, SiteMap], theta: dict[str, int], lif: bool) -> list[Instr]:
    """The ``NRESET`` of every site, in site order (ST-BIF, or LIF with ``lif``), before a run."""
    return [
        Instr(
            Op.NRESET,
            nvec=sm.nvec,
            nch=sm.nch,
            vbase=sm.base,
            tbase=sm.base,
            pbase=theta[name],
            lif=int(lif),
            note=f"reset {name}" + (" (V = 0)" if lif else ""),
        )
        for name, sm in sites.items()
    ]


def _aw_weights(
    sm: SiteMap, wbase: int, dst: int, dstride: int, d1: int, dhi: int, note: str, nvec: int | None = None
) -> Instr:
    """The engine pass ``dst += spikes(sm) · W`` of a weight matrix at ``wbase`` in ``W`` (laid out
    by :meth:`_Alloc.weights`: ``d1`` chunks per input channel, ``dhi`` outputs)."""
    return Instr(
        Op.AW,
        nvec=sm.nvec if nvec is None else nvec,
        src=SRC_SPIKES,
        sbase=sm.base,
        sstride=sm.nch,
        c0=0,
        c1=sm.nch,
        lo=0,
        hi=sm.channels,
        msrc=0,
        mbase=wbase,
        mstride=d1,
        dbase=dst,
        dstride=dstride,
        d0=0,
        d1=d1,
        dlo=0,
        dhi=dhi,
        note=note,
    )


def _finish(
    prog: list[Instr],
    al: _Alloc,
    need_rows: dict[str, int],
    counter: _Counters,
    *,
    logits_base: int,
    logits_rows: int,
    bank0_rows: int,
    **model: Any,
) -> Program:
    """Ends a program (send the logits, end), checks it (:func:`_check_program`) and returns it
    with the layout's regions, images, counters and D bank rows; ``model`` the other fields."""
    prog.append(Instr(Op.OUT, dbase=logits_base, count=logits_rows, note="logits, counters, status"))
    prog.append(Instr(Op.END))
    params = al.params
    _check_program(prog, params)
    return Program(
        params=params,
        instrs=prog,
        regions=al.regions,
        images=al.images(need_rows),
        counters=counter.names,
        ac_fanout=counter.fanout,
        row_costs=counter.row_costs,
        logits_base=logits_base,
        logits_rows=logits_rows,
        d_bank_rows=(bank0_rows, al.next["D"] - params.d_split),
        **model,
    )


def _check_program(prog: list[Instr], params: CoreParams) -> None:
    """Checks a finished program against the core: its length, its fields, its D bank promise.

    Raises :class:`CompileError` for a program longer than ``prog_depth`` or a field value its
    bits cannot hold; :class:`AssertionError` when an instruction's two D reads of one cycle fall
    in one bank (a layout bug, not a model that does not fit).
    """
    if len(prog) > params.prog_depth:
        raise CompileError(f"the program has {len(prog)} instructions, the core holds {params.prog_depth}")
    for ins in prog:
        for f in ("qn", "qp"):
            if not -512 <= getattr(ins, f) < 512:
                raise CompileError(f"{ins.note}: {f} = {getattr(ins, f)} outside the 10-bit field")
        if ins.imm >= 1 << params.field_width("imm"):
            raise CompileError(f"{ins.note}: imm = {ins.imm} exceeds its field")
        if ins.op == Op.SROW and ins.joff + ins.count > params.srow_columns:
            raise CompileError(
                f"{ins.note}: SROW columns up to {ins.joff + ins.count} exceed the core's "
                f"srow_columns = {params.srow_columns}"
            )
    # the layout's promise to the core's D banks: the two D reads of a cycle go to different banks
    for ins in prog:
        pair = {
            Op.NEURON: (ins.dbase, ins.bbase),
            Op.AW: (ins.dbase, ins.mbase) if ins.msrc == 1 else None,
            Op.SROW: (ins.dbase, ins.mbase),
            Op.LN: (ins.xbase, ins.sbase),
            Op.SMX: (ins.xbase, ins.sbase),
            Op.COPY: (ins.sbase, ins.bbase) if ins.has_bias else None,
        }.get(ins.op)
        if pair is not None and (pair[0] < params.d_split) == (pair[1] < params.d_split):
            raise AssertionError(f"{ins.note}: both D reads of a cycle in one bank")


def compile_artifact(art: ViTArtifact, params: CoreParams, t_max: int = 512) -> Program:
    """Layout, memory images and program of ``art`` on a core with ``params``."""
    if not isinstance(art, ViTArtifact):
        raise TypeError(f"art must be a ViTArtifact, got {type(art).__name__}")
    if not isinstance(params, CoreParams):
        raise TypeError(f"params must be a CoreParams, got {type(params).__name__}")
    if not isinstance(t_max, int) or t_max < 1:
        raise ValueError(f"t_max must be a positive integer, got {t_max!r}")
    P = params.lanes
    d, T, S = art.dims, art.tensors, art.sites
    rep = analyze(art)
    N, D, F, H, dh = d.tokens, d.dim, d.mlp_dim, d.heads, d.head_dim
    Np, pd = d.patches, d.patch_dim
    Dch, Fch, Nch, Pdch = _cdiv(D, P), _cdiv(F, P), _cdiv(N, P), _cdiv(pd, P)
    Cch = _cdiv(d.classes, P)
    al = _Alloc(params)
    put = al.put

    # ---- fixed checks against the core's fixed-point parameters -----------------------------------
    if (art.ln_K, art.ln_P) != (params.ln_K, params.ln_P):
        raise CompileError(
            f"LayerNorm K, P = {art.ln_K}, {art.ln_P}; the core has {params.ln_K}, {params.ln_P}"
        )
    for i, sp in enumerate(art.softmax):
        if (sp.G, sp.H, sp.F, sp.P) != (params.sm_G, params.sm_H, params.sm_F, params.sm_P):
            raise CompileError(
                f"softmax[{i}] G, H, F, P = {sp.G}, {sp.H}, {sp.F}, {sp.P}; the core has "
                f"{params.sm_G}, {params.sm_H}, {params.sm_F}, {params.sm_P}"
            )
        if sp.C >= 1 << params.cw:
            raise CompileError(f"softmax[{i}].C = {sp.C} needs more than cw = {params.cw} bits")
    for name, E in art.ln_eps.items():
        if E >= 1 << params.ew:
            raise CompileError(f"ln_eps[{name}] = {E} needs more than ew = {params.ew} bits")
    if D > params.max_dim:
        raise CompileError(f"dims.dim = {D} exceeds the LayerNorm unit's max_dim = {params.max_dim}")
    if N > params.max_n:
        raise CompileError(f"tokens = {N} exceed the softmax unit's max_n = {params.max_n}")

    # ---- widths ----------------------------------------------------------------------------------
    def bits_of(keys: list[str]) -> int:
        return max(rep.bits[k] for k in keys)

    sites_all = list(S)
    dkeys = [
        k
        for k in rep.bits
        if k.endswith(".current")
        or k.endswith(".scores")
        or k.endswith(".output")
        or k.endswith(".scores.step")
    ] + ["residual", "logits"]
    bias_bits = max(signed_bits(int(np.min(T[k])), int(np.max(T[k]))) for k in T if k.endswith("bias"))
    init_bits = signed_bits(
        int(np.min(T["pos"])) - int(np.abs(T["cls"]).max()),
        int(np.max(T["pos"])) + int(np.abs(T["cls"]).max()),
    )
    need_d = max(bits_of(dkeys), bias_bits, init_bits, params.sm_P + 2)
    need_v = bits_of([f"{s}.membrane" for s in sites_all])
    need_t = bits_of([f"{s}.tracer" for s in sites_all])
    theta_max = max(int(np.max(S[s].theta)) for s in sites_all)
    gb = [T[k] for k in T if k.endswith("gamma") or k.endswith("beta")]
    need_q = max([theta_max.bit_length() + 1] + [signed_bits(int(g.min()), int(g.max())) for g in gb])
    need_i = (
        max(1, int(art.input_max).bit_length())
        if art.input_min >= 0
        else signed_bits(art.input_min, art.input_max)
    )
    widths = {
        "D (dw)": (need_d, params.dw),
        "V (vw)": (need_v, params.vw),
        "T (tw)": (need_t, params.tw),
        "Q (pw)": (need_q, params.pw),
        "I (iw)": (need_i, params.iw),
    }
    for k, (need, have) in widths.items():
        if need > have:
            raise CompileError(f"word {k}: the model's worst case needs {need} bits, the core has {have}")

    # ---- D bank 0 (rows below d_split): what units read through port B ----------------------------
    # The units read two D rows in a cycle (port A: the row they update or stream; port B: a bias, a
    # running-sum matrix, ΔU or ΔZ) and the core routes each read to its bank by address, so the two
    # reads of every instruction must fall in different banks: biases vs. currents (NEURON), K/V/Q/A
    # running sums vs. ΔZ and the attention output (AW msrc=1, SROW), ΔU vs. the LayerNorm inputs and
    # softmax inputs vs. ΔZ (LN, SMX pass A). Bank 0 holds the first of each pair, bank 1 the rest.
    bias: dict[str, int] = {}

    def site_bias(site: str, b: np.ndarray) -> None:
        bias[site] = al.vector("D", f"bias.{site}", b, "bias, added at t = 0")

    site_bias("patch_embed", T["patch_embed.bias"])
    for i in range(d.depth):
        p = f"blocks.{i}."
        b = T[p + "qkv.bias"]
        for k, s in enumerate("qkv"):
            site_bias(p + s, b[k * D : (k + 1) * D])
        site_bias(p + "proj", T[p + "proj.bias"])
        site_bias(p + "fc1", T[p + "fc1.bias"])
        site_bias(p + "fc2", T[p + "fc2.bias"])
    # the running state starts here (cleared at every image, bank 1's with it)
    dyn_start = al.next["D"]
    du = al.take("D", "residual.delta", N * Dch, "ΔU of the current step")
    blk: list[dict[str, int]] = []
    for i in range(d.depth):
        p = f"blocks.{i}."
        blk.append(
            {
                "Q": al.take("D", p + "sum.q", N * Dch, "Σ q spikes (SESA A(t−1))"),
                "KT": al.take("D", p + "sum.kT", D * Nch, "Σ k spikes, transposed (SESA B(t)ᵀ)"),
                "V": al.take("D", p + "sum.v", N * Dch, "Σ v spikes"),
                "A": al.take("D", p + "sum.attn", H * N * Nch, "Σ attn spikes"),
                "Z": al.take("D", p + "scores.prev", H * N * Nch, "softmax input of the last step"),
            }
        )
    bank0_rows = al.close_bank0()

    # ---- D bank 1 (rows from d_split): the running state, then the constants read through port A --
    logits = al.take("D", "logits", Cch, "Σ_t head outputs")
    cur: dict[str, int] = {}
    cur["patch_embed"] = al.take("D", "cur.patch_embed", Np * Dch, "currents")
    for i in range(d.depth):
        p = f"blocks.{i}."
        r = blk[i]
        r["ln1.x"] = al.take("D", p + "ln1.x", N * Dch, "LayerNorm running input")
        r["ln1.y"] = al.take("D", p + "ln1.y", N * Dch, "LayerNorm previous output")
        cur[p + "norm1"] = al.take("D", p + "cur.norm1", N * Dch, "currents")
        r["qkv"] = al.take("D", p + "cur.qkv", N * 3 * Dch, "currents of q, k, v (per token: q, k, v chunks)")
        r["dZ"] = al.take("D", p + "scores", H * N * Nch, "scores Z, the SESA passes add ΔZ")
        r["Y"] = al.take("D", p + "softmax.y", H * N * Nch, "softmax previous output")
        cur[p + "attn"] = al.take("D", p + "cur.attn", H * N * Nch, "currents")
        cur[p + "after_attn"] = al.take("D", p + "cur.after_attn", N * Dch, "currents")
        cur[p + "proj"] = al.take("D", p + "cur.proj", N * Dch, "currents")
        r["ln2.x"] = al.take("D", p + "ln2.x", N * Dch, "LayerNorm running input")
        r["ln2.y"] = al.take("D", p + "ln2.y", N * Dch, "LayerNorm previous output")
        cur[p + "norm2"] = al.take("D", p + "cur.norm2", N * Dch, "currents")
        cur[p + "fc1"] = al.take("D", p + "cur.fc1", N * Fch, "currents")
        cur[p + "fc2"] = al.take("D", p + "cur.fc2", N * Dch, "currents")
    fin_x = al.take("D", "norm.x", N * Dch, "LayerNorm running input")
    fin_y = al.take("D", "norm.y", N * Dch, "LayerNorm previous output")
    cur["norm"] = al.take("D", "cur.norm", N * Dch, "currents")
    dyn_end = al.next["D"]
    init = np.broadcast_to(T["pos"].astype(np.int64), (N, D)).copy()
    init[0] += T["cls"]
    init_base = al.take("D", "residual.init", N * Dch, "pos + cls, the residual's t = 0 input")
    put("D", init_base, _rows(init, P))
    hbias = al.vector("D", "head.bias", T["head.bias"], "head bias (logits start value)")

    # ---- sites: V/T/S rows, Θ rows in Q -----------------------------------------------------------
    sites: dict[str, SiteMap] = {}
    theta: dict[str, int] = {}

    def site(name: str, nvec: int, channels: int, shape: tuple[int, ...]) -> None:
        sites[name], theta[name] = al.site(
            name, nvec, channels, shape, S[name].theta, "spikes; V and T at the same rows"
        )

    site("patch_embed", Np, D, (Np, D))
    for i in range(d.depth):
        p = f"blocks.{i}."
        for s, nv, ch, shp in (
            ("norm1", N, D, (N, D)),
            ("q", N, D, (N, D)),
            ("k", N, D, (N, D)),
            ("v", N, D, (N, D)),
            ("attn", H * N, N, (H, N, N)),
            ("after_attn", N, D, (N, D)),
            ("proj", N, D, (N, D)),
            ("norm2", N, D, (N, D)),
            ("fc1", N, F, (N, F)),
            ("fc2", N, D, (N, D)),
        ):
            site(p + s, nv, ch, shp)
    site("norm", N, D, (N, D))
    n_rows = al.next["S"]
    kts = []
    for i in range(d.depth):
        kts.append(al.take("S", f"blocks.{i}.kT.spikes", D * Nch, "k spikes of the step, transposed"))
    gamma: dict[str, tuple[int, int]] = {}
    for ln in art.ln_names():
        g = al.vector("Q", f"{ln}.gamma", T[ln + ".gamma"], "Γ")
        b = al.vector("Q", f"{ln}.beta", T[ln + ".beta"], "B")
        gamma[ln] = (g, b)

    # ---- weights (W): the patch embedding first, then the blocks' and the head's -------------------
    wb = {"patch_embed": al.weights("patch_embed", T["patch_embed.weight"], "patch embedding")}
    wb.update(al.block_weights(T, d.depth, D))
    al.image_region(Np * Pdch)

    # ---- capacity -------------------------------------------------------------------------------------
    need_rows = al.need_rows(n_rows)

    # ---- counters ---------------------------------------------------------------------------------------
    counter = _Counters(params)

    # ---- program --------------------------------------------------------------------------------------
    prog: list[Instr] = []
    emit = prog.append
    emit(Instr(Op.LOADIN, count=Np * Pdch, note="image codes"))
    prog.extend(_reset_sites(sites, theta, lif=False))
    emit(Instr(Op.COPY, dbase=dyn_start, count=dyn_end - dyn_start, zero=1, note="clear running state"))
    emit(Instr(Op.COPY, dbase=logits, sbase=hbias, count=Cch, note="logits = head bias"))
    step_start = len(prog)

    def neuron(
        name: str, cbase: int, cstride: int, tid: int, has_bias: bool, vec0: int = 0, nvec: int | None = None
    ) -> None:
        sm = sites[name]
        nv = sm.nvec if nvec is None else nvec
        emit(
            Instr(
                Op.NEURON,
                nvec=nv,
                nch=sm.nch,
                dbase=cbase + vec0 * cstride,
                dstride=cstride,
                bbase=bias.get(name, 0),
                has_bias=int(has_bias),
                vbase=sm.base + vec0 * sm.nch,
                tbase=sm.base + vec0 * sm.nch,
                pbase=theta[name],
                sbase=sm.base + vec0 * sm.nch,
                qn=S[name].qn,
                qp=S[name].qp,
                tid=tid,
                note=f"ST-BIF {name}",
            )
        )

    def aw(
        src_site: str,
        wname: str,
        dst: int,
        dstride: int,
        d1: int,
        dhi: int,
        note: str,
        nvec: int | None = None,
    ) -> None:
        emit(_aw_weights(sites[src_site], wb[wname], dst, dstride, d1, dhi, note, nvec))

    # patch embedding: MACs once, at t = 0
    code_src = SRC_SCODES if art.input_min < 0 else SRC_CODES
    emit(
        Instr(Op.COPY, dbase=du, sbase=init_base, count=N * Dch, t0=1, note="ΔU = pos + cls at t = 0, else 0")
    )
    emit(
        Instr(
            Op.AW,
            nvec=Np,
            src=code_src,
            sbase=0,
            sstride=Pdch,
            **_src_slice(0, pd, P),
            msrc=0,
            mbase=wb["patch_embed"],
            mstride=Dch,
            dbase=cur["patch_embed"],
            dstride=Dch,
            **_dst_slice(0, D, P),
            t0=1,
            note="patch embedding MACs (t = 0 only)",
        )
    )
    neuron("patch_embed", cur["patch_embed"], Dch, counter("patch_embed"), True)
    pe = sites["patch_embed"]
    emit(
        Instr(
            Op.SPKADD,
            nvec=Np,
            nch=Dch,
            sbase=pe.base,
            dbase=du + Dch,
            dstride=Dch,
            imm=S["patch_embed"].M,
            note="ΔU[1:] += M · patch_embed spikes",
        )
    )

    def layernorm(ln: str, x: int, y: int, out: int) -> None:
        g, b = gamma[ln]
        emit(
            Instr(
                Op.LN,
                nvec=N,
                nch=Dch,
                dim=D,
                xbase=x,
                sbase=du,
                ybase=y,
                obase=out,
                pbase=g,
                bbase=b,
                imm=art.ln_eps[ln],
                tid=counter(ln, row_cost=layernorm_row_cost(D, True)),
                note=f"differential LayerNorm {ln}",
            )
        )

    for i in range(d.depth):
        p = f"blocks.{i}."
        r = blk[i]
        sq, sk, sv, sa = (sites[p + s] for s in ("q", "k", "v", "attn"))
        layernorm(p + "ln1", r["ln1.x"], r["ln1.y"], cur[p + "norm1"])
        neuron(p + "norm1", cur[p + "norm1"], Dch, counter(p + "norm1", 3 * D), False)
        aw(p + "norm1", p + "qkv", r["qkv"], 3 * Dch, 3 * Dch, 3 * Dch * P, "qkv")
        for k, s in enumerate("qkv"):
            neuron(p + s, r["qkv"] + k * Dch, 3 * Dch, counter(p + s, N), True)
        # SESA q·kᵀ: ΔZ = q(t)·K(t)ᵀ + Q(t−1)·k(t)ᵀ
        prog.extend(_transpose_k(sk, kts[i], r["KT"], N, P, "Kᵀ += k(t)ᵀ; kᵀ spikes"))
        for h in range(H):
            emit(
                Instr(
                    Op.SROW,
                    count=dh,
                    nvec=N,
                    sbase=kts[i] + h * dh * Nch,
                    sstride=Nch,
                    **_src_slice(0, N, P),
                    mbase=r["Q"],
                    mstride=Dch,
                    joff=h * dh,
                    dbase=r["dZ"] + h * N * Nch,
                    dstride=Nch,
                    note=f"Z[{h}] += Q(t−1)·k(t)ᵀ",
                )
            )
            lo, hi = h * dh, (h + 1) * dh
            emit(
                Instr(
                    Op.AW,
                    nvec=N,
                    src=SRC_SPIKES,
                    sbase=sq.base,
                    sstride=Dch,
                    **_src_slice(lo, hi, P),
                    joff=lo,
                    msrc=1,
                    mbase=r["KT"] + lo * Nch,
                    mstride=Nch,
                    dbase=r["dZ"] + h * N * Nch,
                    dstride=Nch,
                    **_dst_slice(0, N, P),
                    note=f"Z[{h}] += q(t)·K(t)ᵀ",
                )
            )
        emit(
            Instr(Op.SPKADD, nvec=N, nch=Dch, sbase=sq.base, dbase=r["Q"], dstride=Dch, imm=1, note="Q += q")
        )
        emit(
            Instr(
                Op.SMX,
                nvec=H * N,
                nch=Nch,
                dim=N,
                xbase=r["Z"],
                sbase=r["dZ"],
                ybase=r["Y"],
                obase=cur[p + "attn"],
                imm=art.softmax[i].C,
                tid=counter(p + "softmax", row_cost=softmax_row_cost(N, True)),
                running=1,
                note="differential softmax of the rows whose Z changed",
            )
        )
        neuron(p + "attn", cur[p + "attn"], Nch, counter(p + "attn", dh), False)
        # SESA attn·v: ΔO = attn(t)·V(t) + A(t−1)·v(t)
        emit(
            Instr(Op.SPKADD, nvec=N, nch=Dch, sbase=sv.base, dbase=r["V"], dstride=Dch, imm=1, note="V += v")
        )
        aa = cur[p + "after_attn"]
        for h in range(H):
            lo, hi = h * dh, (h + 1) * dh
            emit(
                Instr(
                    Op.AW,
                    nvec=N,
                    src=SRC_SPIKES,
                    sbase=sa.base + h * N * Nch,
                    sstride=Nch,
                    **_src_slice(0, N, P),
                    joff=0,
                    msrc=1,
                    mbase=r["V"],
                    mstride=Dch,
                    dbase=aa,
                    dstride=Dch,
                    **_dst_slice(lo, hi, P),
                    note=f"O[{h}] += attn(t)·V(t)",
                )
            )
            emit(
                Instr(
                    Op.SROW,
                    count=N,
                    nvec=N,
                    sbase=sv.base,
                    sstride=Dch,
                    **_src_slice(lo, hi, P),
                    mbase=r["A"] + h * N * Nch,
                    mstride=Nch,
                    joff=0,
                    dbase=aa,
                    dstride=Dch,
                    note=f"O[{h}] += A(t−1)·v(t)",
                )
            )
        emit(
            Instr(
                Op.SPKADD,
                nvec=H * N,
                nch=Nch,
                sbase=sa.base,
                dbase=r["A"],
                dstride=Nch,
                imm=1,
                note="A += attn",
            )
        )
        neuron(p + "after_attn", aa, Dch, counter(p + "after_attn", D), False)
        aw(p + "after_attn", p + "proj", cur[p + "proj"], Dch, Dch, D, "proj")
        neuron(p + "proj", cur[p + "proj"], Dch, counter(p + "proj"), True)
        emit(
            Instr(
                Op.SPKADD,
                nvec=N,
                nch=Dch,
                sbase=sites[p + "proj"].base,
                dbase=du,
                dstride=Dch,
                imm=S[p + "proj"].M,
                note="ΔU += M · proj spikes",
            )
        )
        layernorm(p + "ln2", r["ln2.x"], r["ln2.y"], cur[p + "norm2"])
        neuron(p + "norm2", cur[p + "norm2"], Dch, counter(p + "norm2", F), False)
        aw(p + "norm2", p + "fc1", cur[p + "fc1"], Fch, Fch, F, "fc1")
        neuron(p + "fc1", cur[p + "fc1"], Fch, counter(p + "fc1", D), True)
        aw(p + "fc1", p + "fc2", cur[p + "fc2"], Dch, Dch, D, "fc2")
        neuron(p + "fc2", cur[p + "fc2"], Dch, counter(p + "fc2"), True)
        emit(
            Instr(
                Op.SPKADD,
                nvec=N,
                nch=Dch,
                sbase=sites[p + "fc2"].base,
                dbase=du,
                dstride=Dch,
                imm=S[p + "fc2"].M,
                note="ΔU += M · fc2 spikes",
            )
        )
    layernorm("norm", fin_x, fin_y, cur["norm"])
    neuron("norm", cur["norm"], Dch, counter("norm.cls", d.classes), False, 0, 1)
    neuron("norm", cur["norm"], Dch, counter("norm.patches"), False, 1, N - 1)
    aw("norm", "head", logits, Cch, Cch, d.classes, "head (class token)", nvec=1)
    emit(Instr(Op.STEP, imm=t_max, note="quiescence / t_max"))
    return _finish(
        prog,
        al,
        need_rows,
        counter,
        step_start=step_start,
        sites=sites,
        logits_base=logits,
        logits_rows=Cch,
        bank0_rows=bank0_rows,
        fixed_macs=Np * pd * D,
        input_rows=Np * Pdch,
        classes=d.classes,
        t_max=t_max,
        embed_dim=D,
        widths=widths,
    )


def _check_fit_args(
    art: object, kind: type, kind_name: str, lanes: int, narrow: bool, fixed: dict[str, int]
) -> None:
    """Checks the arguments of a ``fit_*`` function: ``lanes`` a power of two, ``art`` a ``kind``
    (``kind_name`` in the message), ``narrow`` a bool, every ``fixed`` name a :class:`CoreParams`
    field with an int value."""
    if not isinstance(lanes, int) or isinstance(lanes, bool):
        raise TypeError(f"lanes must be an int, got {type(lanes).__name__}")
    if lanes < 1 or lanes & (lanes - 1):
        raise ValueError(f"lanes must be a power of two, got {lanes}")
    if not isinstance(art, kind):
        raise TypeError(f"art must be {kind_name}, got {type(art).__name__}")
    if not isinstance(narrow, bool):
        raise TypeError(f"narrow must be a bool, got {type(narrow).__name__}")
    names = {f.name for f in dataclass_fields(CoreParams)} - {"lanes"}
    for k, v in fixed.items():
        if k not in names:
            raise ValueError(f"{k!r} is not a CoreParams field (fields: {sorted(names)})")
        if not isinstance(v, int) or isinstance(v, bool):
            raise TypeError(f"{k} must be an int, got {type(v).__name__}")


def _probe_params(lanes: int, fixed: dict[str, int], **wide: int) -> CoreParams:
    """The core a ``fit_*`` function compiles onto first: every memory very deep (so the program's
    own rows show), ``wide`` the fields the compiler must not reject, ``fixed`` the user's others."""
    big = 1 << 20
    return CoreParams(
        lanes=lanes,
        **{
            **{attr: big for attr in set(MEMORIES.values())},
            "d_split": big // 2,
            "prog_depth": big,
            **wide,
            **{k: v for k, v in fixed.items() if k not in {*MEMORIES.values(), "d_split"}},
        },
    )


def _fitted_depths(prog: Program) -> dict[str, int]:
    """Every memory depth, ``d_split`` and ``prog_depth`` of the smallest core that holds ``prog``.

    Each depth is the rows the program uses: a block RAM holds whole rows whatever the depth, and
    a memory in LUTs (Q, I, the program) costs per row.
    """
    n0, n1 = prog.d_bank_rows
    fields = {attr: 1 for attr in set(MEMORIES.values())}
    for mem, attr in MEMORIES.items():
        fields[attr] = max(fields[attr], prog.images[mem].shape[0])
    fields.update(d_split=max(1, n0), d_depth=max(1, n0) + max(1, n1), prog_depth=len(prog.instrs))
    return fields


def fit_params(
    art: ViTArtifact, lanes: int, t_max: int = 512, *, narrow: bool = False, **fixed: int
) -> CoreParams:
    """The smallest core of ``lanes`` lanes that runs ``art``.

    The model is compiled once onto a core with very deep memories; every memory depth is then
    the rows the program uses (``Program.images``; ``D``'s two banks each their own,
    ``Program.d_bank_rows``), the program memory's its instruction count, the norm units' row
    lengths the model's.

    Parameters
    ----------
    art : ViTArtifact
        The model.
    lanes : int
        ``P``, a power of two.
    t_max : int
        The program's step limit (it does not change the core).
    narrow : bool
        Also cut the logic to the model: the memory words ``dw``, ``vw``, ``tw``, ``pw``, ``iw``
        to the widths the analysis needs (the output beats carry the ``count_width``-bit counts
        over as many ``dw``-bit lanes as they need), the norm units' ``cw`` and ``ew`` to the
        model's constants, and the event counters to the program's. A run at the analysis's
        worst case then exercises the narrowest legal words.
    **fixed : int
        Any other :class:`CoreParams` field; a field given here overrides the fitted one.

    Returns
    -------
    CoreParams

    Raises
    ------
    TypeError
        ``lanes``, ``narrow`` or a ``fixed`` value of the wrong type.
    ValueError
        ``lanes`` not a power of two, or a ``fixed`` name that is no :class:`CoreParams` field.
    """
    _check_fit_args(art, ViTArtifact, "a ViTArtifact", lanes, narrow, fixed)
    big = 1 << 20
    prog = compile_artifact(art, _probe_params(lanes, fixed, max_dim=big, max_n=big), t_max)
    fields = _fitted_depths(prog)
    d = art.dims
    fields.update(max_dim=d.dim, max_n=d.tokens)
    if narrow:
        for word, (needed, _have) in prog.widths.items():
            # keys read "D (dw)": the memory and the CoreParams field of its word
            attr = word[word.index("(") + 1 : word.index(")")]
            fields[attr] = needed
        fields["cw"] = max(1, max(sp.C for sp in art.softmax).bit_length())
        fields["ew"] = max(1, max(art.ln_eps.values()).bit_length())
        fields["counters"] = len(prog.counters)
    fields.update(fixed)
    return CoreParams(lanes=lanes, **fields)


def image_rows(prog: Program, art: ViTArtifact, image: np.ndarray) -> np.ndarray:
    """One image's ``I`` rows (the input stream's beats): patch × ``ceil(patch_dim / P)`` chunks."""
    from ..model.vit import patchify

    x = patchify(art, np.asarray(image)[None])[0]
    return _rows(x, prog.params.lanes)
