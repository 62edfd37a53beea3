"""The SpikeZIP-family ViT in integers: the QANN forward and the time-stepped SNN (SPEC §3–§7, §9–§10).

Both read the same :class:`~equispike.model.artifact.ViTArtifact` and call the single operator
definitions of :mod:`neurons`, :mod:`intops`, :mod:`differential` and :mod:`sesa`. The SNN summed
over time equals the QANN, element for element, once it has settled.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .artifact import ViTArtifact
from .differential import DifferentialOp
from .intops import int_layernorm, int_softmax
from .neurons import STBIFArray, quantize, smallest_int_dtype
from .sesa import SpikeProduct

__all__ = ["patchify", "qann_forward", "QANNResult", "ViTSNN", "SNNResult", "dense_macs"]

MAC_PJ = 4.6
AC_PJ = 0.9


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


def _linear(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Integer ``x @ wᵀ`` in int64 (x codes or spikes, w int8)."""
    return np.matmul(x.astype(np.int64), w.astype(np.int64).T)


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


def dense_macs(art: ViTArtifact) -> int:
    """MACs of one dense QANN inference (linears, attention products, head)."""
    d = art.dims
    N, D, F = d.tokens, d.dim, d.mlp_dim
    per_block = N * D * 3 * D + 2 * N * N * D + N * D * D + 2 * N * D * F
    return d.patches * d.patch_dim * D + d.depth * per_block + D * d.classes


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

    ``calibrate(site, preactivation)`` is called before each site is quantized (the random-model
    factory uses it to choose thresholds from data); it may replace ``art.sites[site]``. It is also
    called as ``calibrate("blocks.i.scores", z)`` before each softmax and may replace ``art.softmax[i]``.
    """
    d = art.dims
    codes: dict[str, np.ndarray] = {}

    def q(name: str, a: np.ndarray) -> np.ndarray:
        if calibrate is not None:
            calibrate(name, a)
        s = art.sites[name]
        codes[name] = quantize(a, s.theta, s.qn, s.qp)
        return codes[name]

    T = art.tensors
    x = patchify(art, images)
    n = q("patch_embed", _linear(x, T["patch_embed.weight"]) + T["patch_embed.bias"])
    u = _initial_residual(art, x.shape[0])
    u[:, 1:, :] += n * art.sites["patch_embed"].M
    D = d.dim
    for i in range(d.depth):
        p = f"blocks.{i}."
        y = int_layernorm(u, T[p + "ln1.gamma"], T[p + "ln1.beta"], art.ln_params(p + "ln1"))
        n1 = q(p + "norm1", y)
        a = _linear(n1, T[p + "qkv.weight"]) + T[p + "qkv.bias"]
        nq = q(p + "q", a[..., :D])
        nk = q(p + "k", a[..., D : 2 * D])
        nv = q(p + "v", a[..., 2 * D :])
        z = np.matmul(_heads(nq, d.heads), _heads(nk, d.heads).swapaxes(-1, -2))
        if calibrate is not None:
            calibrate(p + "scores", z)
        na = q(p + "attn", int_softmax(z, art.softmax[i]))
        o = _merge(np.matmul(na, _heads(nv, d.heads)))
        naa = q(p + "after_attn", o)
        npj = q(p + "proj", _linear(naa, T[p + "proj.weight"]) + T[p + "proj.bias"])
        u = u + npj * art.sites[p + "proj"].M
        y2 = int_layernorm(u, T[p + "ln2.gamma"], T[p + "ln2.beta"], art.ln_params(p + "ln2"))
        n2 = q(p + "norm2", y2)
        h = q(p + "fc1", _linear(n2, T[p + "fc1.weight"]) + T[p + "fc1.bias"])
        f2 = q(p + "fc2", _linear(h, T[p + "fc2.weight"]) + T[p + "fc2.bias"])
        u = u + f2 * art.sites[p + "fc2"].M
    nf = q("norm", int_layernorm(u, T["norm.gamma"], T["norm.beta"], art.ln_params("norm")))
    logits = _linear(nf[:, 0, :], T["head.weight"]) + T["head.bias"]
    return QANNResult(codes=codes, logits=logits)


# --------------------------------------------------------------------------------------------------
# time-stepped SNN
# --------------------------------------------------------------------------------------------------
@dataclass
class SNNResult:
    """Outcome of an SNN run on a batch.

    ``codes`` are the settled spike tracers (Σ_t spikes) per site; ``logits`` the head outputs summed
    over steps; ``settle_step[b]`` the first step at which image b was quiescent (``-1`` if it did
    not settle by ``t_max``); ``steps`` the number of steps run.
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

    @property
    def settled(self) -> bool:
        return bool((self.settle_step >= 0).all())

    def energy_pj(self) -> np.ndarray:
        """SPEC §10 energy per image in pJ."""
        return MAC_PJ * self.macs + AC_PJ * self.acs


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
                rec["current"].append(np.asarray(current, dtype=np.int64).copy())
        if self.probe:
            self.value(f"{site}.current", current)
            self.value(f"{site}.membrane", neurons.V)
            self.value(f"{site}.tracer", neurons.S)
            cum = self.cumulative[site] = self.cumulative.get(site, 0) + np.asarray(current, np.int64)
            self.value(f"{site}.cumulative", cum)

    def value(self, key: str, x) -> None:
        if self.probe:
            x = np.asarray(x)
            m = int(np.abs(x.astype(np.int64)).max()) if x.size else 0
            if m > self.extremes.get(key, -1):
                self.extremes[key] = m

    def result(self) -> dict[str, dict[str, np.ndarray]]:
        out = {}
        for site, rec in self.data.items():
            out[site] = {k: np.stack(v) for k, v in rec.items() if v}
        return out


class ViTSNN:
    """The converted spiking ViT of an artifact, run step by step on a batch of images.

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
    ) -> SNNResult:
        """Run until every image is quiescent for a whole step, or ``t_max`` steps.

        ``record=True`` keeps every site's per-step spikes (int8) and, with ``record_currents``, the
        input currents (int64); a set of site names keeps only those. ``probe=True`` tracks the
        largest magnitude of every accumulator, membrane and operator intermediate (for the width test).
        """
        if not isinstance(t_max, int) or t_max < 1:
            raise ValueError(f"t_max must be a positive integer, got {t_max!r}")
        art, d, T = self.art, self.art.dims, self.art.tensors
        x = patchify(art, images)
        B, N, D, H, dh = x.shape[0], d.tokens, d.dim, d.heads, d.head_dim
        rec = _Recorder(
            None if record is False else (set() if record is True else set(record)),
            record_currents,
            probe,
        )

        # build the network state
        sites = {"patch_embed": self._neurons("patch_embed", (B, d.patches, D))}
        lns: dict[str, DifferentialOp] = {}
        sm: list[DifferentialOp] = []
        qk: list[SpikeProduct] = []
        av: list[SpikeProduct] = []

        def ln_op(name: str, g: str, b: str) -> DifferentialOp:
            params = art.ln_params(name)
            gamma, beta = T[g], T[b]

            def op(rows: np.ndarray) -> np.ndarray:
                rec.value("residual", rows)
                probe = (lambda k, v: rec.value(f"{name}.{k}", v)) if rec.probe else None
                return int_layernorm(rows, gamma, beta, params, probe)

            return DifferentialOp(op, (B, N, D))

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
            lns[p + "ln1"] = ln_op(p + "ln1", p + "ln1.gamma", p + "ln1.beta")
            lns[p + "ln2"] = ln_op(p + "ln2", p + "ln2.gamma", p + "ln2.beta")
            params = art.softmax[i]

            def sm_op(rows: np.ndarray, params=params, key=p + "scores") -> np.ndarray:
                rec.value(key, rows)
                probe = (lambda k, v: rec.value(f"{key[:-6]}softmax.{k}", v)) if rec.probe else None
                return int_softmax(rows, params, probe)

            sm.append(DifferentialOp(sm_op, (B, H, N, N)))
            qk.append(SpikeProduct((B, H, N, dh), (B, H, N, dh), transpose_b=True))
            av.append(SpikeProduct((B, H, N, N), (B, H, N, dh), transpose_b=False))
        lns["norm"] = ln_op("norm", "norm.gamma", "norm.beta")
        sites["norm"] = self._neurons("norm", (B, N, D))

        logits = np.zeros((B, d.classes), dtype=np.int64)
        acs = np.zeros(B, dtype=np.int64)
        macs = np.zeros(B, dtype=np.int64)
        spikes_total = {k: np.zeros(B, dtype=np.int64) for k in sites}
        settle = np.full(B, -1, dtype=np.int64)
        active_any = np.zeros(B, dtype=bool)
        zero_pe = np.zeros((B, d.patches, D), dtype=np.int64)

        def fire(name: str, current: np.ndarray) -> np.ndarray:
            s = sites[name].step(current)
            rec.site(name, current, s, sites[name])
            nz = np.count_nonzero(s.reshape(B, -1), axis=1)
            spikes_total[name] += nz
            active_any[:] |= nz > 0
            return s

        def aw(name: str, s: np.ndarray, w: str, b: str, t: int) -> np.ndarray:
            W = T[w]
            cur = _linear(s, W)
            if t == 0:
                cur += T[b]
            acs[:] += np.count_nonzero(s.reshape(B, -1), axis=1) * W.shape[0]
            return cur

        pe_macs = d.patches * d.patch_dim * D
        for t in range(t_max):
            active_any[:] = False
            if t == 0:
                a0 = _linear(x, T["patch_embed.weight"]) + T["patch_embed.bias"]
                macs += pe_macs
                s_pe = fire("patch_embed", a0)
            else:
                s_pe = fire("patch_embed", zero_pe)
            du = np.zeros((B, N, D), dtype=np.int64)
            du[:, 1:, :] = s_pe.astype(np.int64) * art.sites["patch_embed"].M
            if t == 0:
                du += _initial_residual(art, B)
            for i in range(d.depth):
                p = f"blocks.{i}."
                s1 = fire(p + "norm1", lns[p + "ln1"].step(du))
                cur = aw(p + "qkv", s1, p + "qkv.weight", p + "qkv.bias", t)
                sq = fire(p + "q", cur[..., :D])
                sk = fire(p + "k", cur[..., D : 2 * D])
                sv = fire(p + "v", cur[..., 2 * D :])
                dz = qk[i].step(_heads(sq, H), _heads(sk, H))
                rec.value(p + "scores.step", dz)
                sa = fire(p + "attn", sm[i].step(dz))
                do = av[i].step(sa, _heads(sv, H))
                saa = fire(p + "after_attn", _merge(do))
                spj = fire(p + "proj", aw(p + "proj", saa, p + "proj.weight", p + "proj.bias", t))
                du = du + spj.astype(np.int64) * art.sites[p + "proj"].M
                s2 = fire(p + "norm2", lns[p + "ln2"].step(du))
                sf1 = fire(p + "fc1", aw(p + "fc1", s2, p + "fc1.weight", p + "fc1.bias", t))
                sf2 = fire(p + "fc2", aw(p + "fc2", sf1, p + "fc2.weight", p + "fc2.bias", t))
                du = du + sf2.astype(np.int64) * art.sites[p + "fc2"].M
            sfn = fire("norm", lns["norm"].step(du))
            head = aw("head", sfn[:, 0, :], "head.weight", "head.bias", t)
            rec.value("head.current", head)
            logits += head
            rec.value("logits", logits)
            newly = (~active_any) & (settle < 0) & (t > 0)
            settle[newly] = t
            if progress is not None:
                progress(t, int((settle >= 0).sum()))
            if (settle >= 0).all():
                break
        steps = t + 1
        for i in range(d.depth):
            acs += qk[i].acs + av[i].acs
        # differential units: count their arithmetic as MACs (per recomputed row, ~3 ops per element)
        ln_rows = sum(op.rows_computed for op in lns.values())
        sm_rows = sum(op.rows_computed for op in sm)
        macs += 3 * D * ln_rows + 3 * N * sm_rows
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
        )
