"""The SpikeZIP-family ViT in integers: the QANN forward and the time-stepped SNN (SPEC §3–§7, §9–§10).

Both read the same :class:`~equispike.model.artifact.ViTArtifact` and call the single operator
definitions of :mod:`neurons`, :mod:`intops`, :mod:`differential` and :mod:`sesa`. The SNN summed
over time equals the QANN, element for element, once it has settled.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .artifact import ViTArtifact
from .differential import DifferentialOp
from .energy import AC_PJ, MAC_PJ, dense_counts, energy_pj, layernorm_row_cost, softmax_row_cost
from .fastmath import (
    exact_dtype,
    keep_freed_memory,
    layernorm_exact,
    matmul_exact,
    quantize_exact,
    softmax_exact,
    wide_dtype,
)
from .intops import int_layernorm, int_softmax
from .linear import AWLinear
from .neurons import STBIFArray, smallest_int_dtype
from .sesa import SpikeProduct

__all__ = ["patchify", "qann_forward", "QANNResult", "ViTSNN", "SNNResult", "dense_macs", "MAC_PJ", "AC_PJ"]



def patchify(art: ViTArtifact, images: np.ndarray) -> np.ndarray:
    """Integer images ``(B, C, H, W)`` (or ``(B, H, W)`` for one channel) → patches ``(B, N_p, C·p·p)``."""
    d = art.dims
    x = np.asarray(images)
    if x.ndim == 3 and d.channels == 1:
        x = x[:, None]
    if x.ndim != 4 or x.shape[1:] != (d.channels, d.image, d.image):
        raise ValueError(
            f"images must have shape (B, {d.channels}, {d.image}, {d.image}), got {np.shape(images)}"
        )
    if x.dtype.kind not in "iu":
        raise TypeError(f"images must be integer codes, got dtype {x.dtype}")
    if x.size and (int(x.min()) < art.input_min or int(x.max()) > art.input_max):
        raise ValueError(
            f"image codes must lie in [{art.input_min}, {art.input_max}] (artifact input range), "
            f"got [{int(x.min())}, {int(x.max())}]"
        )
    B, C, H, W = x.shape
    p = d.patch
    x = x.reshape(B, C, H // p, p, W // p, p).transpose(0, 2, 4, 1, 3, 5)
    return x.reshape(B, (H // p) * (W // p), C * p * p).astype(np.int64)


def _heads(x: np.ndarray, heads: int) -> np.ndarray:
    B, N, D = x.shape
    return x.reshape(B, N, heads, D // heads).transpose(0, 2, 1, 3)


def _merge(x: np.ndarray) -> np.ndarray:
    B, H, N, dh = x.shape
    return x.transpose(0, 2, 1, 3).reshape(B, N, H * dh)


def _initial_residual(art: ViTArtifact, batch: int) -> np.ndarray:
    u = np.broadcast_to(art.tensors["pos"].astype(np.int64), (batch, art.dims.tokens, art.dims.dim)).copy()
    u[:, 0, :] += art.tensors["cls"]
    return u


def _count_spikes(s: np.ndarray, lead: int) -> np.ndarray:
    """Nonzero ternary spikes per leading index (int64): ``Σ|s|``, accumulated in the narrowest safe int."""
    flat = s.reshape(lead, -1)
    acc = np.int16 if flat.shape[1] < (1 << 15) else np.int64
    return np.add.reduce(np.abs(flat), axis=1, dtype=acc).astype(np.int64)


def dense_macs(art: ViTArtifact) -> int:
    """MACs of one dense QANN inference (SPEC §10: linears, attention products, softmax and LayerNorm
    rows, head); its ACs are in :func:`~equispike.model.energy.dense_counts`."""
    return sum(m for m, _ in dense_counts(art).values())


# keyed by dtype objects: ``dtype.name`` is a slow Python-level property, asked at every quantizer
_RANK = {np.dtype(np.float32): 0, np.dtype(np.float64): 1, np.dtype(np.int64): 2}


def _fit(a: np.ndarray, bound: int) -> np.ndarray:
    """``a`` in a dtype exact for magnitudes up to ``bound`` (widened only when needed)."""
    dt = exact_dtype(bound)
    return a.astype(dt) if _RANK.get(a.dtype, 2) < _RANK[dt] else a


class _Plan:
    """Per-artifact arithmetic plan: every linear with its proven bound, and the operator bounds."""

    def __init__(self, art: ViTArtifact):
        from .widths import layernorm_output_bound, residual_bound

        d, T, S = art.dims, art.tensors, art.sites
        self.umax = residual_bound(art)
        self.u_dtype = wide_dtype(self.umax)
        # residual increments (spikes × M) of one step: float32 when exact
        self.du_dtype = exact_dtype(self.umax)
        xin = max(abs(art.input_min), abs(art.input_max))
        self.qann = {"patch_embed": AWLinear(T["patch_embed.weight"], T["patch_embed.bias"], xin)}
        self.snn: dict[str, AWLinear] = {}
        for i in range(d.depth):
            p = f"blocks.{i}."
            for lin, src in (("qkv", "norm1"), ("proj", "after_attn"), ("fc1", "norm2"), ("fc2", "fc1")):
                w, b = T[p + lin + ".weight"], T[p + lin + ".bias"]
                self.qann[p + lin] = AWLinear(w, b, S[p + src].smax)
                self.snn[p + lin] = AWLinear(w, b, 1)
        self.qann["head"] = AWLinear(T["head.weight"], T["head.bias"], S["norm"].smax)
        self.snn["head"] = AWLinear(T["head.weight"], T["head.bias"], 1)
        self.ln: dict[str, tuple] = {}
        for name, g, b in [(f"blocks.{i}.ln{j}", f"blocks.{i}.ln{j}.gamma", f"blocks.{i}.ln{j}.beta")
                           for i in range(d.depth) for j in (1, 2)] + [("norm", "norm.gamma", "norm.beta")]:
            params = art.ln_params(name)
            gmax = int(np.abs(T[g]).max())
            ymax = layernorm_output_bound(d.dim, gmax, int(np.abs(T[b]).max()), params)
            self.ln[name] = (T[g], T[b], params, gmax, ymax)

    def increment(self, codes: np.ndarray, M: int) -> np.ndarray:
        """A branch's residual increment ``codes·M`` in :attr:`du_dtype`, in one pass (exact: the
        residual bound covers every branch's ``M·smax``)."""
        return np.multiply(codes, M, dtype=self.du_dtype, casting="unsafe")

    def layernorm(self, name: str, x: np.ndarray) -> np.ndarray:
        g, b, params, gmax, ymax = self.ln[name]
        return layernorm_exact(x, g, b, params, self.umax, gmax, ymax)


def _plan_key(art: ViTArtifact) -> tuple:
    """Every artifact field a :class:`_Plan` reads (the tensors by content), and the mantissa limits
    that pick its paths: equal keys, equal plans."""
    from . import fastmath

    head = (fastmath.F32_LIMIT, fastmath.F64_LIMIT, art.dims, art.input_min, art.input_max,
            art.ln_K, art.ln_P, tuple(sorted(art.ln_eps.items())),
            tuple((n, int(s.levels), bool(s.signed), None if s.M is None else int(s.M))
                  for n, s in art.sites.items()))
    return (head, *((n, t.dtype.str, t.shape, t.tobytes()) for n, t in art.tensors.items()))


_PLANS: dict[int, tuple[tuple, _Plan]] = {}


def _plan_for(art: ViTArtifact) -> _Plan:
    """The plan of ``art``, built once while its fields stay the same (building one costs about as
    much as 3 % of a batch-64 QANN inference); an artifact changed in place gets a new one."""
    key = _plan_key(art)
    hit = _PLANS.get(id(art))
    if hit is not None and hit[0] == key:
        return hit[1]
    if hit is None:  # drop the entry with the artifact (a reused id is caught by the key anyway)
        weakref.finalize(art, _PLANS.pop, id(art), None)
    plan = _PLANS[id(art)] = (key, _Plan(art))
    return plan[1]


# --------------------------------------------------------------------------------------------------
# integer QANN
# --------------------------------------------------------------------------------------------------
@dataclass
class QANNResult:
    codes: dict[str, np.ndarray]  # site -> integer codes (B, ...)
    logits: np.ndarray  # (B, classes) int64


SiteHook = Callable[[str, np.ndarray], None]


def qann_forward(art: ViTArtifact, images: np.ndarray, calibrate: SiteHook | None = None) -> QANNResult:
    """Integer QANN inference on a batch of integer images.

    Every product and operator runs on the exact path its proven bound allows (:mod:`fastmath`).
    ``calibrate(site, preactivation)`` is called (with int64 values) before each site is quantized
    (the random-model factory uses it to choose thresholds from data); it may replace
    ``art.sites[site]``. It is also called as ``calibrate("blocks.i.scores", z)`` before each softmax
    and may replace ``art.softmax[i]``.
    """
    keep_freed_memory()
    d = art.dims
    plan = _plan_for(art)
    codes: dict[str, np.ndarray] = {}
    S = art.sites

    def q(name: str, a: np.ndarray, bound: int, owned: bool = True) -> np.ndarray:
        if calibrate is not None:
            calibrate(name, a.astype(np.int64))
        s = S[name]
        fit = _fit(a, bound + int(s.theta.max()))
        n = quantize_exact(fit, s.theta, s.qn, s.qp, overwrite=fit is not a or owned)
        codes[name] = n.astype(np.int64)
        return n

    def lin(name: str, x: np.ndarray) -> tuple[np.ndarray, int]:
        layer = plan.qann[name]
        return layer(x), layer.bound

    x = patchify(art, images)
    n = q("patch_embed", *lin("patch_embed", x))
    u = _initial_residual(art, x.shape[0]).astype(plan.u_dtype)
    u[:, 1:, :] += plan.increment(n, S["patch_embed"].M)
    D, N, H, dh = d.dim, d.tokens, d.heads, d.head_dim
    for i in range(d.depth):
        p = f"blocks.{i}."
        n1 = q(p + "norm1", plan.layernorm(p + "ln1", u), plan.ln[p + "ln1"][4])
        a, ab = lin(p + "qkv", n1)
        nq = q(p + "q", a[..., :D], ab)
        nk = q(p + "k", a[..., D : 2 * D], ab)
        nv = q(p + "v", a[..., 2 * D :], ab)
        zmax = dh * S[p + "q"].smax * S[p + "k"].smax
        z = matmul_exact(_heads(nq, H), _heads(nk, H).swapaxes(-1, -2), zmax)
        if calibrate is not None:
            calibrate(p + "scores", z.astype(np.int64))
        sp = art.softmax[i]
        na = q(p + "attn", softmax_exact(z, sp, zmax), 1 << sp.P)
        omax = N * S[p + "attn"].smax * S[p + "v"].smax
        o = _merge(matmul_exact(na, _heads(nv, H), omax))
        naa = q(p + "after_attn", o, omax)
        npj = q(p + "proj", *lin(p + "proj", naa))
        u += plan.increment(npj, S[p + "proj"].M)
        n2 = q(p + "norm2", plan.layernorm(p + "ln2", u), plan.ln[p + "ln2"][4])
        h = q(p + "fc1", *lin(p + "fc1", n2))
        f2 = q(p + "fc2", *lin(p + "fc2", h))
        u += plan.increment(f2, S[p + "fc2"].M)
    nf = q("norm", plan.layernorm("norm", u), plan.ln["norm"][4])
    logits = plan.qann["head"](nf[:, 0, :]).astype(np.int64)
    return QANNResult(codes=codes, logits=logits)


# --------------------------------------------------------------------------------------------------
# time-stepped SNN
# --------------------------------------------------------------------------------------------------
@dataclass
class SNNResult:
    """Outcome of an SNN run on a batch.

    ``codes`` are the settled spike tracers (Σ_t spikes) per site; ``logits`` the head outputs summed
    over steps; ``settle_step[b]`` the first step at which image b was quiescent (``-1`` if it did
    not settle by ``t_max``); ``steps`` the number of steps run. ``acs``/``macs`` are the SPEC §10
    counts per image; ``units`` breaks them down per unit (``{"acs", "macs"}`` per image, and
    ``rows`` recomputed per image for the differential softmax/LayerNorm units).
    """

    codes: dict[str, np.ndarray]
    logits: np.ndarray
    settle_step: np.ndarray
    steps: int
    acs: np.ndarray  # per image
    macs: np.ndarray  # per image
    spikes: dict[str, np.ndarray]  # per site: total nonzero spikes per image
    records: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    extremes: dict[str, int] = field(default_factory=dict)
    units: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    @property
    def settled(self) -> bool:
        return bool((self.settle_step >= 0).all())

    def energy_pj(self) -> np.ndarray:
        """SPEC §10 energy per image in pJ."""
        return energy_pj(self.macs, self.acs)


class _Recorder:
    """Per-step records of selected sites (spikes as int8, currents optionally) and value extremes."""

    def __init__(self, sites: set[str] | None, currents: bool, probe: bool):
        self.sites = sites
        self.currents = currents
        self.probe = probe
        self.data: dict[str, dict[str, list[np.ndarray]]] = {}
        self.extremes: dict[str, int] = {}
        self.cumulative: dict[str, np.ndarray] = {}

    def wants(self, site: str) -> bool:
        return self.sites is not None and (not self.sites or site in self.sites)

    def site(self, site: str, current: np.ndarray, spikes: np.ndarray, neurons: STBIFArray) -> None:
        if self.wants(site):
            rec = self.data.setdefault(site, {"spikes": [], "current": []})
            rec["spikes"].append(spikes.copy())
            if self.currents:
                rec["current"].append(np.asarray(current).astype(np.int64))
        if self.probe:
            self.value(f"{site}.current", current)
            self.value(f"{site}.membrane", neurons.V)
            self.value(f"{site}.tracer", neurons.S)
            cum = self.cumulative[site] = self.cumulative.get(site, 0) + np.asarray(current, np.int64)
            self.value(f"{site}.cumulative", cum)

    def silent(self, site: str, shape: tuple[int, ...]) -> None:
        """A step in which the site had no input and no spikes (its state did not change)."""
        if self.wants(site):
            rec = self.data.setdefault(site, {"spikes": [], "current": []})
            rec["spikes"].append(np.zeros(shape, dtype=np.int8))
            if self.currents:
                rec["current"].append(np.zeros(shape, dtype=np.int64))

    def value(self, key: str, x) -> None:
        if self.probe:
            x = np.asarray(x)
            m = int(np.abs(x).max()) if x.size else 0
            if m > self.extremes.get(key, -1):
                self.extremes[key] = m

    def result(self) -> dict[str, dict[str, np.ndarray]]:
        out = {}
        for site, rec in self.data.items():
            out[site] = {k: np.stack(v) for k, v in rec.items() if v}
        return out


class ViTSNN:
    """The converted spiking ViT of an artifact, run step by step on a batch of images.

    Work follows activity: a site that emitted no spikes and receives no input is skipped (its state
    cannot change), and every product and differential unit skips silent operands and unchanged rows.
    Products run on the exact float path their proven bounds allow
    (:func:`~equispike.model.widths.fast_paths`).

    Parameters
    ----------
    art:
        A validated artifact.
    narrow:
        Hold each membrane in the narrowest integer dtype the width analysis allows (default), else int64.
    """

    def __init__(self, art: ViTArtifact, narrow: bool = True):
        from .widths import analyze

        self.art = art
        self.report = analyze(art)
        self.narrow = narrow
        self.plan = _Plan(art)
        # currents enter the membranes in the narrowest integer dtype that holds their proven bound
        # (every site's current is bounded by the width analysis: AW layers by their weights, the
        # differential units by their operators' output ranges, SESA by its tracers); stating the
        # bound spares the neurons' overflow check two reductions of the current per step
        self._cur_bound = {k: self.report.bound(f"{k}.current") for k in art.sites}
        self._cur_dtype = {k: smallest_int_dtype(-b, b) for k, b in self._cur_bound.items()}
        keep_freed_memory()

    def _neurons(self, name: str, shape: tuple[int, ...]) -> STBIFArray:
        s = self.art.sites[name]
        if self.narrow:
            lo, hi = self.report.lo[f"{name}.membrane"], self.report.hi[f"{name}.membrane"]
            dt = smallest_int_dtype(lo, hi)
        else:
            dt = np.int64
        return STBIFArray(shape, s.theta, s.qn, s.qp, v_dtype=dt)

    def run(
        self,
        images: np.ndarray,
        t_max: int = 512,
        record: bool | set[str] = False,
        record_currents: bool = True,
        probe: bool = False,
        progress: Callable[[int, int], None] | None = None,
        fixed_steps: bool = False,
    ) -> SNNResult:
        """Run until every image is quiescent for a whole step, or ``t_max`` steps.

        ``record=True`` keeps every site's per-step spikes (int8) and, with ``record_currents``, the
        input currents (int64); a set of site names keeps only those. ``probe=True`` tracks the
        largest magnitude of every accumulator, membrane and operator intermediate (for the width test).
        ``fixed_steps=True`` runs exactly ``t_max`` steps (``settle_step`` is still reported).
        """
        if not isinstance(t_max, int) or t_max < 1:
            raise ValueError(f"t_max must be a positive integer, got {t_max!r}")
        art, d, plan = self.art, self.art.dims, self.plan
        x = patchify(art, images)
        B, N, D, H, dh = x.shape[0], d.tokens, d.dim, d.heads, d.head_dim
        rec = _Recorder(
            None if record is False else (set() if record is True else set(record)),
            record_currents,
            probe,
        )
        S = art.sites

        # build the network state
        sites = {"patch_embed": self._neurons("patch_embed", (B, d.patches, D))}
        lns: dict[str, DifferentialOp] = {}
        sm: list[DifferentialOp] = []
        qk: list[SpikeProduct] = []
        av: list[SpikeProduct] = []

        cur_dtype, cur_bound = self._cur_dtype, self._cur_bound

        def ln_op(name: str, site: str) -> DifferentialOp:
            def op(rows: np.ndarray) -> np.ndarray:
                rec.value("residual", rows)
                if rec.probe:  # the int64 definition, which shows its intermediates
                    g, b, params, _, _ = plan.ln[name]
                    return int_layernorm(np.asarray(rows).astype(np.int64), g, b, params,
                                         lambda k, v: rec.value(f"{name}.{k}", v))
                return plan.layernorm(name, rows)

            # running sums of the residual in the dtype its bound allows (float32 below 2^24: half
            # the state to stream at every step; the LayerNorm widens its own copy); the deltas are
            # written in the fed site's current dtype (its proven bound holds them)
            return DifferentialOp(op, (B, N, D), dtype=exact_dtype(plan.umax), out_dtype=cur_dtype[site])

        for i in range(d.depth):
            p = f"blocks.{i}."
            for s, shape in (
                ("norm1", (B, N, D)),
                ("q", (B, N, D)),
                ("k", (B, N, D)),
                ("v", (B, N, D)),
                ("attn", (B, H, N, N)),
                ("after_attn", (B, N, D)),
                ("proj", (B, N, D)),
                ("norm2", (B, N, D)),
                ("fc1", (B, N, d.mlp_dim)),
                ("fc2", (B, N, D)),
            ):
                sites[p + s] = self._neurons(p + s, shape)
            lns[p + "ln1"] = ln_op(p + "ln1", p + "norm1")
            lns[p + "ln2"] = ln_op(p + "ln2", p + "norm2")
            params = art.softmax[i]
            zmax = dh * S[p + "q"].smax * S[p + "k"].smax

            def sm_op(rows: np.ndarray, params=params, key=p + "scores", zmax=zmax) -> np.ndarray:
                rec.value(key, rows)
                if rec.probe:
                    return int_softmax(np.asarray(rows).astype(np.int64), params,
                                       lambda k, v: rec.value(f"{key[:-6]}softmax.{k}", v))
                return softmax_exact(rows, params, zmax)

            sm.append(DifferentialOp(sm_op, (B, H, N, N), dtype=exact_dtype(zmax),
                                     out_dtype=cur_dtype[p + "attn"]))
            qk.append(SpikeProduct((B, H, N, dh), (B, H, N, dh), transpose_b=True,
                                   a_max=S[p + "q"].smax, b_max=S[p + "k"].smax))
            av.append(SpikeProduct((B, H, N, N), (B, H, N, dh), transpose_b=False,
                                   a_max=S[p + "attn"].smax, b_max=S[p + "v"].smax))
        lns["norm"] = ln_op("norm", "norm")
        sites["norm"] = self._neurons("norm", (B, N, D))

        silent = dict.fromkeys(sites, False)
        logits = np.zeros((B, d.classes), dtype=np.int64)
        spikes_total = {k: np.zeros(B, dtype=np.int64) for k in sites}
        units: dict[str, dict[str, np.ndarray]] = {}

        def count(unit: str, acs=None, macs=None) -> None:
            u = units.get(unit)
            if u is None:  # (a setdefault would build two arrays at every call)
                u = units[unit] = {"acs": np.zeros(B, np.int64), "macs": np.zeros(B, np.int64)}
            if acs is not None:
                u["acs"] += acs
            if macs is not None:
                u["macs"] += macs

        settle = np.full(B, -1, dtype=np.int64)
        active_any = np.zeros(B, dtype=bool)

        def fire(name: str, current: np.ndarray | None, t: int) -> tuple[np.ndarray | None, np.ndarray]:
            """Step a site; returns (spikes or None when it emitted none, nonzero spikes per image)."""
            n = sites[name]
            if current is None:
                if silent[name]:
                    rec.silent(name, n.shape)
                    return None, zero_count
                # a zero current as a broadcast view: the neurons read one value, not an array
                current = np.broadcast_to(np.zeros((), dtype=cur_dtype[name]), n.shape)
            elif current.dtype != cur_dtype[name]:
                current = current.astype(cur_dtype[name])
            s = n.step(current, cur_bound[name])
            rec.site(name, current, s, n)
            nz = _count_spikes(s, B)
            spikes_total[name] += nz
            # count_nonzero and a single logical_or: numpy's reductions cost more per call on
            # these batch-sized vectors than the work itself
            if not np.count_nonzero(nz):
                silent[name] = True
                return None, nz
            silent[name] = False
            np.logical_or(active_any, nz, out=active_any)
            return s, nz

        zero_count = np.zeros(B, dtype=np.int64)

        def aw(name: str, s: np.ndarray | None, nz: np.ndarray, t: int) -> np.ndarray | None:
            layer = plan.snn[name]
            if s is None:
                if t == 0 and layer.bias is not None:
                    shape = (B, layer.n_out) if name == "head" else (B, N, layer.n_out)
                    return np.broadcast_to(layer.bias, shape)
                return None
            count(name, acs=nz * layer.n_out)
            return layer.step(s, t)

        def heads(s: np.ndarray | None) -> np.ndarray | None:
            return None if s is None else _heads(s, H)

        pe = plan.qann["patch_embed"]
        sm_cost = softmax_row_cost(N, differential=True)
        ln_cost = layernorm_row_cost(D, differential=True)
        t = 0
        for t in range(t_max):
            active_any[:] = False
            if t == 0:
                count("patch_embed", macs=np.full(B, d.patches * d.patch_dim * D, np.int64))
                s_pe, _ = fire("patch_embed", pe(x), t)
            else:
                s_pe, _ = fire("patch_embed", None, t)
            if t == 0:
                du = _initial_residual(art, B).astype(plan.u_dtype)
                if s_pe is not None:
                    du[:, 1:, :] += plan.increment(s_pe, S["patch_embed"].M)
            else:
                du = None
                if s_pe is not None:
                    du = np.zeros((B, N, D), dtype=plan.du_dtype)
                    du[:, 1:, :] = plan.increment(s_pe, S["patch_embed"].M)
            for i in range(d.depth):
                p = f"blocks.{i}."
                s1, nz1 = fire(p + "norm1", lns[p + "ln1"].step(du), t)
                cur = aw(p + "qkv", s1, nz1, t)
                if cur is None:
                    sq, nzq = fire(p + "q", None, t)
                    sk, nzk = fire(p + "k", None, t)
                    sv, nzv = fire(p + "v", None, t)
                else:
                    sq, nzq = fire(p + "q", cur[..., :D], t)
                    sk, nzk = fire(p + "k", cur[..., D : 2 * D], t)
                    sv, nzv = fire(p + "v", cur[..., 2 * D :], t)
                dz, acs = qk[i].step(heads(sq), heads(sk), nzq, nzk)
                if dz is not None:
                    rec.value(p + "scores.step", dz)
                if acs is not None:
                    count(p + "qk", acs=acs)
                sa, nza = fire(p + "attn", sm[i].step(dz), t)
                do, acs = av[i].step(sa, heads(sv), nza, nzv)
                if acs is not None:
                    count(p + "av", acs=acs)
                saa, nzaa = fire(p + "after_attn", None if do is None else _merge(do), t)
                spj, nzpj = fire(p + "proj", aw(p + "proj", saa, nzaa, t), t)
                if spj is not None:
                    # du is this step's own array (the LayerNorm above has consumed it): add in place
                    inc = plan.increment(spj, S[p + "proj"].M)
                    du = inc if du is None else np.add(du, inc, out=du)
                s2, nz2 = fire(p + "norm2", lns[p + "ln2"].step(du), t)
                sf1, nzf1 = fire(p + "fc1", aw(p + "fc1", s2, nz2, t), t)
                sf2, _ = fire(p + "fc2", aw(p + "fc2", sf1, nzf1, t), t)
                if sf2 is not None:
                    inc = plan.increment(sf2, S[p + "fc2"].M)
                    du = inc if du is None else np.add(du, inc, out=du)
            sfn, _ = fire("norm", lns["norm"].step(du), t)
            cls = None if sfn is None else sfn[:, 0, :]
            nzc = zero_count if cls is None else _count_spikes(cls, B)
            if cls is not None and not np.count_nonzero(nzc):
                cls = None
            lg = aw("head", cls, nzc, t)
            if lg is not None:
                rec.value("head.current", lg)
            if lg is not None:
                logits += lg.astype(np.int64)
            rec.value("logits", logits)
            newly = (~active_any) & (settle < 0) & (t > 0)
            settle[newly] = t
            if progress is not None:
                progress(t, int((settle >= 0).sum()))
            if not fixed_steps and (settle >= 0).all():
                break
        steps = t + 1
        for name, op in lns.items():
            count(name, acs=op.rows_computed * ln_cost[1], macs=op.rows_computed * ln_cost[0])
            units[name]["rows"] = op.rows_computed.copy()
        for i, op in enumerate(sm):
            name = f"blocks.{i}.softmax"
            count(name, acs=op.rows_computed * sm_cost[1], macs=op.rows_computed * sm_cost[0])
            units[name]["rows"] = op.rows_computed.copy()
        acs = sum(u["acs"] for u in units.values())
        macs = sum(u["macs"] for u in units.values())
        codes = {k: n.S.astype(np.int64) for k, n in sites.items()}
        return SNNResult(
            codes=codes,
            logits=logits,
            settle_step=settle,
            steps=steps,
            acs=acs,
            macs=macs,
            spikes=spikes_total,
            records=rec.result(),
            extremes=rec.extremes,
            units=units,
        )
