"""Compile a spike-driven transformer artifact (``arch: "sdt"``, SPEC §8) into a core program.

The same instruction set, :class:`~.program.Program` and :class:`~.isa.CoreParams` as the ViT's
(:mod:`.program`); the sdt uses the LIF mode of ``NEURON``/``NRESET``, the shift-and-bias mode of
``COPY`` and the fixed step count of ``STEP`` (:class:`~.isa.Instr`). The program, per image:

* before the step loop (the analog stem, once): ``U0 = patches · (W_stem · m)ᵀ`` by the engine on
  the image codes (``m`` folded into the matrix, kept in ``D``), then ``U0 = (U0 >> S) + B_stem``;
* every step: ``U = U0``; per block ``LIF(U)`` (the current row kept: the membrane shortcut),
  ``qkv``, the q, k, v LIFs, the attention, ``U += proj(attn)``, ``LIF(U)``, ``fc1``, its LIF,
  ``U += fc2(h)``; then the head LIF and ``logits += Σ_tokens s · W_headᵀ`` (the spike count's
  product, summed per token by a zero destination stride);
* ``STEP fixed``: exactly ``T`` steps (no quiescence, SPEC §8 re-injects the stem every step).

The branch biases of ``proj`` and ``fc2`` are not added into ``U``: every LIF that reads ``U`` adds
the sum of the biases written before it, a per-channel constant (the ``bias.<LIF>`` rows), so ``U``
holds the engine's sums only. The head bias enters as ``T · N · b_head``, the logits' start value.

SDSA-3, two engine passes per head (SPEC §11's co-activation matrix): the step's k spikes
transposed (``TRANS``: one spike row per channel, lanes = tokens), then ``M = Kᵀ·V`` (each k spike
``(n, i)`` adds token ``n``'s v row, kept in ``D``, into ``M`` row ``i``) and ``x = Q·M`` (each q
spike ``(n, i)`` adds ``M`` row ``i`` into ``x`` row ``n``) into the attention LIF (θ = 4). ``M``
and ``x`` are not saturated at 8: all terms are non-negative and ``min(Q·M, 8)`` gives the same
LIF spikes and state as ``Q·M`` (both fire and reset from 8 up).
SDSA-1: ``kv = LIF(k + v)`` (V reset every step, θ = 1: fires on co-active pairs), the per-channel
token count of ``kv`` (``SPKADD`` with a zero stride), then the attention LIF (V reset every step)
on ``A·q + count`` with ``θ = ⌊N/2⌋ + 1``, ``A = 2θ − 1 ≥ N``: it fires exactly when ``q`` is set
and the count is at least 1.
"""

from __future__ import annotations

import numpy as np

from ..model.sdsa import SDSA_THETA
from ..model.sdt import SDTArtifact
from ..model.sdt_widths import analyze_sdt
from ..model.widths import signed_bits
from .isa import SRC_CODES, SRC_SCODES, SRC_SPIKES, CoreParams, Instr, Op
from .program import (
    CompileError,
    Program,
    SiteMap,
    _Alloc,
    _aw_weights,
    _cdiv,
    _check_fit_args,
    _Counters,
    _dst_slice,
    _finish,
    _fitted_depths,
    _probe_params,
    _reset_sites,
    _rows,
    _src_slice,
    _transpose_k,
)

__all__ = ["compile_sdt", "fit_sdt_params", "sdt_site_shapes"]


def sdt_site_shapes(art: SDTArtifact) -> dict[str, tuple[int, int]]:
    """Traced LIF sites of the sdt program in network order: name -> (vectors, channels).

    The names are the keys of :attr:`~equispike.model.sdt.SDTRun.records`.
    """
    d = art.dims
    N, D, F = d.tokens, d.dim, d.mlp_dim
    out: dict[str, tuple[int, int]] = {}
    for i in range(d.depth):
        p = f"blocks.{i}."
        out[p + "lif1"] = (N, D)
        for s in "qkv":
            out[p + s] = (N, D)
        if art.attention == "sdsa1":
            out[p + "kv"] = (N, D)
        out[p + "attn"] = (N, D)
        out[p + "lif2"] = (N, D)
        out[p + "fc1"] = (N, F)
    out["head"] = (N, D)
    return out


def _sdsa1_theta(tokens: int) -> int:
    """θ of the SDSA-1 attention LIF: ``A = 2θ − 1 ≥ N`` separates ``q = 1`` from any count."""
    return tokens // 2 + 1


def compile_sdt(art: SDTArtifact, params: CoreParams, t_max: int | None = None) -> Program:
    """Layout, memory images and program of the sdt artifact ``art`` on a core with ``params``.

    Parameters
    ----------
    art : SDTArtifact
        A validated sdt artifact.
    params : CoreParams
        The core.
    t_max : int or None
        Time steps of a run; the artifact's ``timesteps`` when None.

    Returns
    -------
    Program

    Raises
    ------
    TypeError
        ``art`` or ``params`` of the wrong type.
    ValueError
        ``t_max`` not a positive integer.
    CompileError
        The model does not fit the core (the memory, word or limit named).
    """
    if not isinstance(art, SDTArtifact):
        raise TypeError(f"art must be an SDTArtifact, got {type(art).__name__}")
    if not isinstance(params, CoreParams):
        raise TypeError(f"params must be a CoreParams, got {type(params).__name__}")
    steps = art.timesteps if t_max is None else t_max
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"t_max must be a positive integer, got {t_max!r}")
    P = params.lanes
    d, T = art.dims, art.tensors
    rep = analyze_sdt(art)
    N, D, F, H, C = d.tokens, d.dim, d.mlp_dim, d.heads, d.classes
    dh = D // H
    pd = d.patch_dim
    Dch, Fch, Nch, Pdch, Cch = _cdiv(D, P), _cdiv(F, P), _cdiv(N, P), _cdiv(pd, P), _cdiv(C, P)
    sdsa3 = art.attention == "sdsa3"
    al = _Alloc(params)
    put = al.put

    # ---- constants derived from the artifact ------------------------------------------------------
    i64 = np.int64
    w_stem = T["stem.weight"].astype(i64) * T["stem.multiplier"].astype(i64)[:, None]  # (D, pd)
    cum: dict[str, np.ndarray] = {}  # the bias sum a LIF reading U adds (U holds no branch bias)
    acc = np.zeros(D, dtype=i64)
    for i in range(d.depth):
        p = f"blocks.{i}."
        cum[p + "lif1"] = acc.copy()
        acc = acc + T[p + "proj.bias"].astype(i64)
        cum[p + "lif2"] = acc.copy()
        acc = acc + T[p + "fc2.bias"].astype(i64)
    cum["head"] = acc.copy()
    logits0 = steps * N * T["head.bias"].astype(i64)

    # ---- widths ---------------------------------------------------------------------------------------
    # D holds the engine's sums: U without the branch biases (so the analysis' residual bounds widen
    # by the bias sums), the stem's product, currents, the unsaturated Q·M, the logits
    bias_abs = sum(
        int(np.abs(T[f"blocks.{i}.{n}.bias"].astype(object)).sum())
        for i in range(d.depth)
        for n in ("proj", "fc2")
    )
    ranges = [
        (rep.lo["stem.product"], rep.hi["stem.product"]),
        (rep.lo["stem.out"], rep.hi["stem.out"]),
        (rep.lo["logits"] - abs(int(logits0.min(initial=0))), rep.hi["logits"] + int(np.abs(logits0).max())),
        (-int(np.abs(w_stem).max(initial=0)), int(np.abs(w_stem).max(initial=0))),
        (0, N * dh + N + 2),  # Q·M unsaturated; SDSA-1's A·q + count and k + v
        (-steps, steps),  # TRANS's running Kᵀ (never cleared within an image: it is not read)
    ]
    for k in rep.bits:
        if k.endswith(".current"):
            widen = (
                bias_abs
                if (k.endswith("lif1.current") or k.endswith("lif2.current") or k == "head.current")
                else 0
            )
            ranges.append((rep.lo[k] - widen, rep.hi[k] + widen))
    for k, b in T.items():
        if k.endswith(".bias"):
            ranges.append((int(b.min()), int(b.max())))
    for v in cum.values():
        ranges.append((int(v.min(initial=0)), int(v.max(initial=0))))
    need_d = max(signed_bits(lo, hi) for lo, hi in ranges)
    mem_keys = [k for k in rep.bits if k.endswith(".membrane")]
    need_v = max(
        [rep.bits[k] for k in mem_keys] + [signed_bits(0, SDSA_THETA - 1 + N * dh), signed_bits(0, 2 * N + 2)]
    )
    thetas = [T[k] for k in T if k.endswith(".theta")]
    theta_max = max([int(np.max(t)) for t in thetas] + [SDSA_THETA, _sdsa1_theta(N)])
    need_q = theta_max.bit_length() + 1
    need_i = (
        max(1, int(art.input_max).bit_length())
        if art.input_min >= 0
        else signed_bits(art.input_min, art.input_max)
    )
    widths = {
        "D (dw)": (need_d, params.dw),
        "V (vw)": (need_v, params.vw),
        "T (tw)": (1, params.tw),
        "Q (pw)": (need_q, params.pw),
        "I (iw)": (need_i, params.iw),
    }
    for k, (need, have) in widths.items():
        if need > have:
            raise CompileError(f"word {k}: the model's worst case needs {need} bits, the core has {have}")

    # ---- D bank 0: what units read through port B (biases, the engine's D matrices) ----------------
    stem_w = al.take("D", "stem.weight_m", pd * Dch, "W_stem · m, transposed (row = patch element)")
    put("D", stem_w, _rows(w_stem.T, P))
    stem_b = al.take("D", "stem.bias", N * Dch, "B_stem (BatchNorm bias + position), per token")
    put("D", stem_b, _rows(T["stem.bias"].astype(i64), P))
    bias: dict[str, int] = {}

    def bias_rows(name: str, b: np.ndarray, note: str) -> None:
        bias[name] = al.vector("D", f"bias.{name}", b, note)

    blk: list[dict[str, int]] = []
    for i in range(d.depth):
        p = f"blocks.{i}."
        b = T[p + "qkv.bias"]
        for k, s in enumerate("qkv"):
            bias_rows(p + s, b[k * D : (k + 1) * D], "bias, every step")
        bias_rows(p + "fc1", T[p + "fc1.bias"], "bias, every step")
        for s in ("lif1", "lif2"):
            if np.any(cum[p + s]):
                bias_rows(p + s, cum[p + s], "bias sum of the branches before this LIF")
    if np.any(cum["head"]):
        bias_rows("head", cum["head"], "bias sum of the branches before this LIF")
    dyn0 = al.next["D"]
    for i in range(d.depth):
        p = f"blocks.{i}."
        if sdsa3:
            blk.append(
                {
                    "Vd": al.take("D", p + "attn.v", N * Dch, "v spikes of the step (the engine's matrix)"),
                    "x": al.take("D", p + "cur.attn", N * Dch, "attention LIF input Q·M"),
                }
            )
        else:
            blk.append({"cnt": al.take("D", p + "attn.count", Dch, "token count of k AND v")})
    bank0_rows = al.close_bank0()

    # ---- D bank 1: the running state, then the constants read through port A ------------------------
    dyn1 = al.next["D"]
    logits = al.take("D", "logits", Cch, "Σ_t head outputs")
    u0 = al.take("D", "residual.init", N * Dch, "U0: the stem's output, every step's start")
    u = al.take("D", "residual", N * Dch, "U without the branch biases")
    for i in range(d.depth):
        p = f"blocks.{i}."
        r = blk[i]
        r["qkv"] = al.take("D", p + "cur.qkv", N * 3 * Dch, "currents of q, k, v (per token: q, k, v chunks)")
        if sdsa3:
            r["M"] = al.take("D", p + "attn.M", D * Dch, "M = Kᵀ·V of the step (row = k channel)")
            r["KT"] = al.take("D", p + "attn.kT", D * Nch, "Σ k spikes, transposed (TRANS's sum, unread)")
        else:
            r["x"] = al.take("D", p + "cur.attn", N * Dch, "attention LIF input")
            r["kv"] = al.take("D", p + "cur.kv", N * Dch, "k + v")
        r["fc1"] = al.take("D", p + "cur.fc1", N * Fch, "currents")
    dyn1_end = al.next["D"]
    linit = al.vector("D", "logits.init", logits0, "T · N · head bias (logits start value)")

    # ---- sites: V/T/S rows, Θ rows in Q -----------------------------------------------------------
    sites: dict[str, SiteMap] = {}
    theta: dict[str, int] = {}

    def theta_of(name: str) -> np.ndarray:
        short = name.split(".")[-1]
        p = name[: -len(short)]
        if short in ("q", "k", "v"):
            k = "qkv".index(short)
            return T[p + "qkv.theta"][k * D : (k + 1) * D]
        if short == "attn":
            return np.full(D, SDSA_THETA if sdsa3 else _sdsa1_theta(N), dtype=i64)
        if short == "kv":
            return np.ones(D, dtype=i64)
        return T[name + ".theta"]

    for name, (nvec, channels) in sdt_site_shapes(art).items():
        sites[name], theta[name] = al.site(
            name, nvec, channels, (nvec, channels), theta_of(name), "spikes; V at the same rows"
        )
    n_rows = al.next["S"]
    kts = []
    if sdsa3:
        for i in range(d.depth):
            kts.append(al.take("S", f"blocks.{i}.kT.spikes", D * Nch, "k spikes of the step, transposed"))

    # ---- weights (W): the blocks' and the head's; the image codes (I) -----------------------------
    wb = al.block_weights(T, d.depth, D)
    al.image_region(N * Pdch)
    need_rows = al.need_rows(n_rows)

    # ---- counters (SPEC §10 as run_sdt counts: ACs per spike of each site) --------------------------
    counter = _Counters(params)

    # ---- program ------------------------------------------------------------------------------------
    prog: list[Instr] = []
    emit = prog.append
    emit(Instr(Op.LOADIN, count=N * Pdch, note="image codes"))
    prog.extend(_reset_sites(sites, theta, lif=True))
    emit(Instr(Op.COPY, dbase=dyn0, count=bank0_rows - dyn0, zero=1, note="clear bank 0 state"))
    emit(Instr(Op.COPY, dbase=dyn1, count=dyn1_end - dyn1, zero=1, note="clear running state"))
    emit(Instr(Op.COPY, dbase=logits, sbase=linit, count=Cch, note="logits = T · N · head bias"))
    emit(
        Instr(
            Op.AW,
            nvec=N,
            src=SRC_SCODES if art.input_min < 0 else SRC_CODES,
            sbase=0,
            sstride=Pdch,
            **_src_slice(0, pd, P),
            msrc=1,
            mbase=stem_w,
            mstride=Dch,
            dbase=u0,
            dstride=Dch,
            **_dst_slice(0, D, P),
            note="stem MACs: U0 = patches · (W · m)ᵀ (once)",
        )
    )
    emit(
        Instr(
            Op.COPY,
            dbase=u0,
            sbase=u0,
            count=N * Dch,
            imm=art.stem_shift,
            has_bias=1,
            bbase=stem_b,
            note="U0 = (U0 >> S) + B_stem",
        )
    )
    step_start = len(prog)
    emit(Instr(Op.COPY, dbase=u, sbase=u0, count=N * Dch, note="U = U0 (the stem, re-injected)"))

    def neuron(name: str, cbase: int, cstride: int, tid: int, bias_name: str | None, keep: bool) -> None:
        sm = sites[name]
        has = bias_name is not None and bias_name in bias
        emit(
            Instr(
                Op.NEURON,
                nvec=sm.nvec,
                nch=sm.nch,
                dbase=cbase,
                dstride=cstride,
                # no bias: a row of the other bank keeps the unit's two D reads in two banks
                bbase=bias[bias_name] if has else (params.d_split if cbase < params.d_split else 0),
                has_bias=int(has),
                vbase=sm.base,
                tbase=sm.base,
                pbase=theta[name],
                sbase=sm.base,
                tid=tid,
                lif=1,
                keep=int(keep),
                note=f"LIF {name}" + (" (current kept)" if keep else ""),
            )
        )

    def aw(src_site: str, wname: str, dst: int, dstride: int, d1: int, dhi: int, note: str) -> None:
        emit(_aw_weights(sites[src_site], wb[wname], dst, dstride, d1, dhi, note))

    def spkadd(src: SiteMap, dst: int, stride: int, imm: int, note: str) -> None:
        # a per-token spike row of ``D`` channels, times ``imm``, into ``dst`` (stride 0: summed)
        emit(Instr(Op.SPKADD, nvec=N, nch=Dch, sbase=src.base, dbase=dst, dstride=stride, imm=imm, note=note))

    def lif_clear(name: str, note: str) -> None:
        # V = 0 before a LIF whose output is a function of this step only (SDSA-1's kv and attn)
        sm = sites[name]
        emit(
            Instr(
                Op.NRESET, nvec=N, nch=Dch, vbase=sm.base, tbase=sm.base, pbase=theta[name], lif=1, note=note
            )
        )

    for i in range(d.depth):
        p = f"blocks.{i}."
        r = blk[i]
        neuron(p + "lif1", u, Dch, counter(p + "lif1", 3 * D), p + "lif1", True)
        aw(p + "lif1", p + "qkv", r["qkv"], 3 * Dch, 3 * Dch, 3 * Dch * P, "qkv")
        for k, s in enumerate("qkv"):
            fan = dh if (sdsa3 and s in "qk") else 0
            neuron(p + s, r["qkv"] + k * Dch, 3 * Dch, counter(p + s, fan), p + s, False)
        sq, sk, sv, sa = (sites[p + s] for s in ("q", "k", "v", "attn"))
        if sdsa3:
            prog.extend(_transpose_k(sk, kts[i], r["KT"], N, P, "kᵀ spikes of the step"))
            emit(Instr(Op.COPY, dbase=r["Vd"], count=N * Dch, zero=1, note="clear v rows"))
            spkadd(sv, r["Vd"], Dch, 1, "v rows")
            emit(Instr(Op.COPY, dbase=r["M"], count=D * Dch, zero=1, note="clear M"))
            for h in range(H):
                lo, hi = h * dh, (h + 1) * dh
                emit(
                    Instr(
                        Op.AW,
                        nvec=dh,
                        src=SRC_SPIKES,
                        sbase=kts[i] + lo * Nch,
                        sstride=Nch,
                        **_src_slice(0, N, P),
                        joff=0,
                        msrc=1,
                        mbase=r["Vd"],
                        mstride=Dch,
                        dbase=r["M"] + lo * Dch,
                        dstride=Dch,
                        **_dst_slice(lo, hi, P),
                        note=f"M[{h}] = Kᵀ·V (each k spike adds its token's v row)",
                    )
                )
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
                        mbase=r["M"] + lo * Dch,
                        mstride=Dch,
                        dbase=r["x"],
                        dstride=Dch,
                        **_dst_slice(lo, hi, P),
                        note=f"x[{h}] = Q·M (each q spike adds its channel's M row)",
                    )
                )
            neuron(p + "attn", r["x"], Dch, counter(p + "attn", D), None, False)
        else:
            skv = sites[p + "kv"]
            A = 2 * _sdsa1_theta(N) - 1
            spkadd(sk, r["kv"], Dch, 1, "kv = k")
            spkadd(sv, r["kv"], Dch, 1, "kv += v")
            lif_clear(p + "kv", "kv: V = 0 (a function of this step only)")
            neuron(p + "kv", r["kv"], Dch, counter(p + "kv", 1), None, False)
            emit(Instr(Op.COPY, dbase=r["cnt"], count=Dch, zero=1, note="clear the count"))
            spkadd(skv, r["cnt"], 0, 1, "count = Σ_tokens k AND v")
            spkadd(sq, r["x"], Dch, A, f"x = {A} · q")
            lif_clear(p + "attn", "attn: V = 0 (a function of this step only)")
            emit(
                Instr(
                    Op.NEURON,
                    nvec=N,
                    nch=Dch,
                    dbase=r["x"],
                    dstride=Dch,
                    bbase=r["cnt"],
                    has_bias=1,
                    vbase=sa.base,
                    tbase=sa.base,
                    pbase=theta[p + "attn"],
                    sbase=sa.base,
                    tid=counter(p + "attn", D),
                    lif=1,
                    note="LIF attn: q AND count >= 1",
                )
            )
        aw(p + "attn", p + "proj", u, Dch, Dch, D, "U += proj(attn)")
        neuron(p + "lif2", u, Dch, counter(p + "lif2", F), p + "lif2", True)
        aw(p + "lif2", p + "fc1", r["fc1"], Fch, Fch, F, "fc1")
        neuron(p + "fc1", r["fc1"], Fch, counter(p + "fc1", D), p + "fc1", False)
        aw(p + "fc1", p + "fc2", u, Dch, Dch, D, "U += fc2(h)")
    neuron("head", u, Dch, counter("head", C), "head", True)
    sh = sites["head"]
    emit(
        Instr(
            Op.AW,
            nvec=N,
            src=SRC_SPIKES,
            sbase=sh.base,
            sstride=Dch,
            **_src_slice(0, D, P),
            msrc=0,
            mbase=wb["head"],
            mstride=Cch,
            dbase=logits,
            dstride=0,
            **_dst_slice(0, C, P),
            note="logits += count · W_headᵀ (every token into one row)",
        )
    )
    emit(Instr(Op.STEP, imm=steps, fixed=1, note="exactly T steps"))
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
        fixed_macs=N * D * pd + N * D,
        input_rows=N * Pdch,
        classes=C,
        t_max=steps,
        embed_dim=D,
        embed_events=N * pd,
        widths=widths,
    )


def fit_sdt_params(
    art: SDTArtifact, lanes: int, t_max: int | None = None, *, narrow: bool = False, **fixed: int
) -> CoreParams:
    """The smallest core of ``lanes`` lanes that runs the sdt artifact ``art``.

    As :func:`~.program.fit_params`: every memory depth is the rows the program uses; ``dw`` is at
    least the model's ``D`` width (32 otherwise); with ``narrow`` every word is the model's. The
    norm units, unused by the sdt, keep their smallest legal row length.

    Parameters
    ----------
    art : SDTArtifact
    lanes : int
        ``P``, a power of two.
    t_max : int or None
        Time steps (the artifact's when None; it does not change the core).
    narrow : bool
        Cut the memory words to the widths the model needs.
    **fixed : int
        Any other :class:`CoreParams` field, overriding the fitted one.

    Returns
    -------
    CoreParams
    """
    _check_fit_args(art, SDTArtifact, "an SDTArtifact", lanes, narrow, fixed)
    prog = compile_sdt(art, _probe_params(lanes, fixed, dw=64, vw=64, pw=64, iw=32), t_max)
    out = _fitted_depths(prog)
    out.update(max_dim=2, max_n=2)
    defaults = CoreParams()
    for word, (needed, _have) in prog.widths.items():
        attr = word[word.index("(") + 1 : word.index(")")]
        out[attr] = needed if narrow else max(needed, getattr(defaults, attr))
    if narrow:
        out["counters"] = len(prog.counters)
    out.update(fixed)
    return CoreParams(lanes=lanes, **out)
