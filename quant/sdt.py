"""A Meta-SpikeFormer-style spike-driven transformer for digits (SPEC §8), trained in two phases.

Phase 1 (float): LIF neurons with τ = 2, hard reset, threshold 1 (real units), sigmoid surrogate
gradient, BatchNorm with batch statistics, T time steps. Phase 2 (integer-aware): BatchNorm is
folded (running statistics) into each linear, weights are rounded to int8 with a per-output-channel
scale, biases and thresholds become integers in each layer's accumulator unit, every LIF halves with
a floor, and rounding passes gradients straight through. The phase-2 forward computes exactly the
integers the exported artifact holds (:meth:`SDTNet.integer_tensors`), so what is trained is what is
exported; :func:`forward_int` runs the exported integers in int64 PyTorch and must equal the golden
model (:func:`equispike.model.sdt.run_sdt`) logit for logit.

Units. Each non-residual linear (``qkv``, ``fc1``) gets the unit ``s_c = max_j |W_cj| / 127`` of its
output channel; its LIF threshold is ``round(1 / s_c)``. The residual stream channel ``c`` has one
unit ``u_c`` for all of its writers (``max`` over every ``proj`` and ``fc2`` of ``max_j |W_cj| / 127``),
so branches add into it without rescaling; the stem (analog input, MACs) is requantized to ``u_c``
by an integer multiplier and a shift. The head (no BatchNorm) uses one scale for all classes so that
integer logits compare directly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
import torch.nn as nn

from ..model.artifact import DerivedDims
from ..model.sdsa import SDSA_SATURATION, SDSA_THETA
from ..model.sdt import ATTENTIONS, SDTArtifact, SDTDims
from .qvit import patchify_torch

__all__ = ["SDTConfig", "SDTNet", "STEM_SHIFT", "INPUT_MAX", "forward_int", "artifact_tensors_torch"]

STEM_SHIFT = 16
INPUT_MAX = 16  # digits pixel codes 0..16, real value code / 16
_EPS_SCALE = 1e-6
BN_BIAS_INIT = 0.5  # floor of a weight scale: a channel of all-zero weights gets a huge threshold


@dataclass(frozen=True)
class SDTConfig(DerivedDims):
    """Architecture of the spike-driven transformer (8×8 digits by default)."""

    image: int = 8
    channels: int = 1
    patch: int = 2
    dim: int = 64
    heads: int = 4
    depth: int = 1
    mlp_ratio: int = 2
    classes: int = 10
    attention: str = "sdsa3"
    timesteps: int = 4

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "attention":
                if v not in ATTENTIONS:
                    raise ValueError(f"attention must be one of {list(ATTENTIONS)}, got {v!r}")
            elif not isinstance(v, int) or isinstance(v, bool) or v < (0 if f.name == "depth" else 1):
                raise ValueError(f"{f.name} must be a positive integer, got {v!r}")
        if self.image % self.patch:
            raise ValueError(f"patch ({self.patch}) must divide image ({self.image})")
        if self.dim % self.heads:
            raise ValueError(f"heads ({self.heads}) must divide dim ({self.dim})")

    @property
    def mlp_dim(self) -> int:
        return self.dim * self.mlp_ratio

    @property
    def tokens(self) -> int:
        return self.patches

    def dims(self) -> SDTDims:
        return SDTDims(
            image=self.image,
            channels=self.channels,
            patch=self.patch,
            dim=self.dim,
            heads=self.heads,
            depth=self.depth,
            mlp_dim=self.mlp_dim,
            classes=self.classes,
        )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> SDTConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"model config: unknown fields {unknown}")
        return cls(**d)


# ------------------------------------------------------------------------------------------------
# spikes, rounding and the LIF neuron
# ------------------------------------------------------------------------------------------------
class _Spike(torch.autograd.Function):
    """Heaviside of ``z`` (fires at ``z >= 0``) with the derivative of ``sigmoid(α z)`` backwards."""

    @staticmethod
    def forward(ctx, z: torch.Tensor, alpha: float) -> torch.Tensor:
        ctx.save_for_backward(z)
        ctx.alpha = alpha
        return (z >= 0).to(z.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (z,) = ctx.saved_tensors
        sg = torch.sigmoid(ctx.alpha * z)
        return grad * ctx.alpha * sg * (1 - sg), None


def spike(h: torch.Tensor, theta: torch.Tensor | float, alpha: float = 4.0) -> torch.Tensor:
    """``h >= θ`` as 0/1 with a sigmoid surrogate; the surrogate sees ``h / θ − 1`` so its width
    follows the threshold (integer units differ from channel to channel)."""
    return _Spike.apply(h / theta - 1.0, alpha)


def round_ste(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.round(x) - x).detach()


def floor_ste(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.floor(x) - x).detach()


def lif_sequence(
    x: torch.Tensor, theta: torch.Tensor | float, integer: bool, alpha: float = 4.0
) -> torch.Tensor:
    """LIF over time, ``x`` of shape ``(T, …)``: ``h = (v + x) / 2`` (floored when ``integer``),
    ``s = h >= θ``, ``v = 0`` on a spike else ``h``. The reset is detached (Meta-SpikeFormer)."""
    v = torch.zeros_like(x[0])
    out = []
    for t in range(x.shape[0]):
        h = (v + x[t]) / 2
        if integer:
            h = floor_ste(h)
        s = spike(h, theta, alpha)
        v = h * (1.0 - s.detach())
        out.append(s)
    return torch.stack(out)


# ------------------------------------------------------------------------------------------------
# the network
# ------------------------------------------------------------------------------------------------
def _fold(lin: nn.Linear, bn: nn.BatchNorm1d) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of ``bn(lin(x))`` with the running statistics (differentiable)."""
    g = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return lin.weight * g[:, None], (lin.bias - bn.running_mean) * g + bn.bias


def _row_scale(w: torch.Tensor) -> torch.Tensor:
    return (w.detach().abs().amax(dim=1) / 127).clamp_min(_EPS_SCALE)


def _theta(scale: torch.Tensor) -> torch.Tensor:
    return torch.round(1.0 / scale).clamp_min(1)


class SDTBlock(nn.Module):
    def __init__(self, cfg: SDTConfig):
        super().__init__()
        D, Fh = cfg.dim, cfg.mlp_dim
        self.cfg = cfg
        self.qkv, self.qkv_bn = nn.Linear(D, 3 * D), nn.BatchNorm1d(3 * D)
        self.proj, self.proj_bn = nn.Linear(D, D), nn.BatchNorm1d(D)
        self.fc1, self.fc1_bn = nn.Linear(D, Fh), nn.BatchNorm1d(Fh)
        self.fc2, self.fc2_bn = nn.Linear(Fh, D), nn.BatchNorm1d(D)


def _bn(bn: nn.BatchNorm1d, y: torch.Tensor) -> torch.Tensor:
    shape = y.shape
    return bn(y.reshape(-1, shape[-1])).reshape(shape)


class SDTNet(nn.Module):
    """The float / integer-aware network. ``integer`` selects the phase-2 forward."""

    def __init__(self, cfg: SDTConfig):
        super().__init__()
        self.cfg = cfg
        D, N = cfg.dim, cfg.tokens
        self.stem, self.stem_bn = nn.Linear(cfg.patch_dim, D), nn.BatchNorm1d(D)
        self.pos = nn.Parameter(torch.randn(N, D) * 0.5)
        self.blocks = nn.ModuleList(SDTBlock(cfg) for _ in range(cfg.depth))
        self.head = nn.Linear(D, cfg.classes)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm1d):
                # a LIF with τ = 2 and θ = 1 needs x >= 2 to fire at t = 0: with zero-mean inputs
                # almost nothing fires and SDSA-3 (which needs Q·M >= 8) stays silent
                nn.init.constant_(m.bias, BN_BIAS_INIT)
        self.integer = False
        self.alpha = 4.0

    # -- attention ------------------------------------------------------------------------------
    def _attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """SDSA on ``(T, B, N, D)`` spikes; SDSA-3 keeps a LIF over time, SDSA-1 is stateless."""
        cfg = self.cfg
        T, B, N, D = q.shape
        if cfg.attention == "sdsa1":
            count = (k * v).sum(dim=2, keepdim=True)
            return q * spike(count, 0.5, self.alpha)
        dh = D // cfg.heads

        def heads(x):
            return x.reshape(T, B, N, cfg.heads, dh).transpose(2, 3)

        m = heads(k).transpose(-1, -2) @ heads(v)  # co-activation counts, integers
        x = (heads(q) @ m).transpose(2, 3).reshape(T, B, N, D)
        return lif_sequence(x, float(SDSA_THETA), self.integer, self.alpha)

    # -- float phase ----------------------------------------------------------------------------
    def _forward_float(self, patches: torch.Tensor) -> torch.Tensor:
        cfg, T = self.cfg, self.cfg.timesteps
        u0 = _bn(self.stem_bn, self.stem(patches / INPUT_MAX)) + self.pos
        u = u0.unsqueeze(0).expand(T, *u0.shape)
        for b in self.blocks:
            s = lif_sequence(u, 1.0, False, self.alpha)
            qkv = lif_sequence(_bn(b.qkv_bn, b.qkv(s)), 1.0, False, self.alpha)
            q, k, v = qkv.split(cfg.dim, dim=-1)
            u = u + _bn(b.proj_bn, b.proj(self._attention(q, k, v)))
            s = lif_sequence(u, 1.0, False, self.alpha)
            h = lif_sequence(_bn(b.fc1_bn, b.fc1(s)), 1.0, False, self.alpha)
            u = u + _bn(b.fc2_bn, b.fc2(h))
        s = lif_sequence(u, 1.0, False, self.alpha)
        return self.head(s.mean(dim=2)).mean(dim=0)

    # -- integer phase --------------------------------------------------------------------------
    def integer_tensors(self) -> dict[str, torch.Tensor]:
        """Every integer of the exported model, as float tensors holding integers (rounding is
        straight-through, so gradients reach the float parameters). Names follow
        :func:`~equispike.model.sdt.sdt_expected_tensors`, plus ``head.scale``."""
        cfg = self.cfg
        out: dict[str, torch.Tensor] = {}
        folded = {}
        writers = []
        for i, b in enumerate(self.blocks):
            p = f"blocks.{i}."
            for name in ("qkv", "proj", "fc1", "fc2"):
                folded[p + name] = _fold(getattr(b, name), getattr(b, name + "_bn"))
            writers += [folded[p + "proj"][0], folded[p + "fc2"][0]]
        if writers:
            u = torch.stack([_row_scale(w) for w in writers]).amax(dim=0)
        else:
            u = torch.full((cfg.dim,), 1 / 64, dtype=self.pos.dtype)
        theta_u = _theta(u)
        ws, bs = _fold(self.stem, self.stem_bn)
        a = _row_scale(ws)
        out["stem.weight"] = round_ste(ws / a[:, None])
        # the real stem output is acc·a/16 + b: in units u_c the multiplier is a/(16 u_c)
        out["stem.multiplier"] = torch.round(a / (INPUT_MAX * u) * 2.0**STEM_SHIFT)
        out["stem.bias"] = round_ste((bs + self.pos) / u)
        for i in range(len(self.blocks)):
            p = f"blocks.{i}."
            out[p + "lif1.theta"] = theta_u
            out[p + "lif2.theta"] = theta_u
            for name in ("qkv", "fc1"):
                w, bias = folded[p + name]
                s = _row_scale(w)
                out[p + name + ".weight"] = round_ste(w / s[:, None])
                out[p + name + ".bias"] = round_ste(bias / s)
                out[p + name + ".theta"] = _theta(s)
            for name in ("proj", "fc2"):
                w, bias = folded[p + name]
                out[p + name + ".weight"] = torch.clamp(round_ste(w / u[:, None]), -128, 127)
                out[p + name + ".bias"] = round_ste(bias / u)
        sh = (self.head.weight.detach().abs().max() / 127).clamp_min(_EPS_SCALE)
        out["head.theta"] = theta_u
        out["head.weight"] = round_ste(self.head.weight / sh)
        out["head.bias"] = round_ste(self.head.bias / sh)
        out["head.scale"] = sh
        return out

    def _forward_integer(self, patches: torch.Tensor, raw: bool = False) -> torch.Tensor:
        cfg, T = self.cfg, self.cfg.timesteps
        it = self.integer_tensors()
        # acc·m reaches 2^30 and more: float64 keeps the stem's integers exact
        acc = patches.double() @ it["stem.weight"].double().T
        u0 = (
            floor_ste(acc * it["stem.multiplier"].double() / 2.0**STEM_SHIFT) + it["stem.bias"].double()
        ).float()
        u = u0.unsqueeze(0).expand(T, *u0.shape)
        for i in range(len(self.blocks)):
            p = f"blocks.{i}."
            s = lif_sequence(u, it[p + "lif1.theta"], True, self.alpha)
            qkv = lif_sequence(
                s @ it[p + "qkv.weight"].T + it[p + "qkv.bias"], it[p + "qkv.theta"], True, self.alpha
            )
            q, k, v = qkv.split(cfg.dim, dim=-1)
            u = u + self._attention(q, k, v) @ it[p + "proj.weight"].T + it[p + "proj.bias"]
            s = lif_sequence(u, it[p + "lif2.theta"], True, self.alpha)
            h = lif_sequence(
                s @ it[p + "fc1.weight"].T + it[p + "fc1.bias"], it[p + "fc1.theta"], True, self.alpha
            )
            u = u + h @ it[p + "fc2.weight"].T + it[p + "fc2.bias"]
        s = lif_sequence(u, it["head.theta"], True, self.alpha)
        N = cfg.tokens
        logits = (s.sum(dim=2) @ it["head.weight"].T + N * it["head.bias"]).sum(dim=0)
        if raw:
            return logits
        # back to the float model's scale (mean over tokens and steps) for the loss
        return logits * it["head.scale"] / (N * T)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        patches = patchify_torch(images, self.cfg.patch).to(self.pos.dtype)
        return self._forward_integer(patches) if self.integer else self._forward_float(patches)

    def integer_logits(self, images: torch.Tensor) -> torch.Tensor:
        """Phase-2 logits before rescaling: the integers the exported model computes."""
        patches = patchify_torch(images, self.cfg.patch).to(self.pos.dtype)
        return self._forward_integer(patches, raw=True)

    def export(self, meta: dict | None = None) -> SDTArtifact:
        """The integer artifact of the current parameters (phase-2 semantics)."""
        with torch.no_grad():
            it = self.integer_tensors()
        tensors = {}
        for k, v in it.items():
            if k == "head.scale":
                continue
            a = v.detach().double().numpy()
            if not np.array_equal(a, np.round(a)):  # pragma: no cover - integer_tensors rounds all
                raise ValueError(f"tensor {k} is not integral")
            tensors[k] = a.astype(np.int64)
        from ..model.sdt import sdt_expected_tensors

        for k, (_, kind) in sdt_expected_tensors(self.cfg.dims()).items():
            if kind == "weight":
                tensors[k] = tensors[k].astype(np.int8)
        art = SDTArtifact(
            dims=self.cfg.dims(),
            tensors=tensors,
            attention=self.cfg.attention,
            timesteps=self.cfg.timesteps,
            stem_shift=STEM_SHIFT,
            input_min=0,
            input_max=INPUT_MAX,
            input_unit=1.0 / INPUT_MAX,
            meta=dict(meta or {}),
        )
        from ..model.sdt_widths import analyze_sdt

        art.widths = dict(analyze_sdt(art).bits)
        return art.validate()


# ------------------------------------------------------------------------------------------------
# the exported integers in int64 PyTorch
# ------------------------------------------------------------------------------------------------
def artifact_tensors_torch(art: SDTArtifact) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.array(v, dtype=np.int64)) for k, v in art.tensors.items()}


def _lif_int(
    v: torch.Tensor, x: torch.Tensor, theta: torch.Tensor | int
) -> tuple[torch.Tensor, torch.Tensor]:
    h = (v + x) >> 1  # arithmetic shift: floor
    s = h >= theta
    return s.to(torch.int64), torch.where(s, torch.zeros_like(h), h)


def forward_int(
    art: SDTArtifact,
    images: np.ndarray | torch.Tensor,
    timesteps: int | None = None,
    tensors: dict[str, torch.Tensor] | None = None,
    spikes: dict[str, list[torch.Tensor]] | None = None,
) -> torch.Tensor:
    """Integer logits ``(B, classes)`` of the artifact in int64 PyTorch, step by step (SPEC §8, §9).

    An implementation independent of the NumPy golden model; the two must agree exactly.
    ``spikes``, when given, receives every LIF site's spikes of every step, one list entry per step,
    under the names of the golden model's records (``blocks.i.lif1``, ``.q``, ``.k``, ``.v``, ``.attn``,
    ``.lif2``, ``.fc1``, SDSA-1's co-active pairs ``.kv``, ``head``).
    """
    d = art.dims
    T = art.timesteps if timesteps is None else int(timesteps)
    t = tensors if tensors is not None else artifact_tensors_torch(art)
    x = torch.as_tensor(np.asarray(images), dtype=torch.int64)
    if int(x.min()) < art.input_min or int(x.max()) > art.input_max:
        raise ValueError(f"image codes must lie in [{art.input_min}, {art.input_max}]")
    patches = patchify_torch(x, d.patch)
    acc = patches @ t["stem.weight"].T
    u0 = ((acc * t["stem.multiplier"]) >> art.stem_shift) + t["stem.bias"]
    B, N, D = u0.shape
    H, dh = d.heads, D // d.heads
    state: dict[str, torch.Tensor] = {}

    def keep(name: str, s: torch.Tensor) -> None:
        if spikes is not None:
            spikes.setdefault(name, []).append(s)

    def lif(name: str, x: torch.Tensor, theta) -> torch.Tensor:
        s, state[name] = _lif_int(state.get(name, torch.zeros_like(x)), x, theta)
        if not name.endswith(".qkv"):  # q, k and v are kept apart below
            keep(name, s)
        return s

    logits = torch.zeros(B, d.classes, dtype=torch.int64)
    for _ in range(T):
        u = u0
        for i in range(d.depth):
            p = f"blocks.{i}."
            s = lif(p + "lif1", u, t[p + "lif1.theta"])
            qkv = lif(p + "qkv", s @ t[p + "qkv.weight"].T + t[p + "qkv.bias"], t[p + "qkv.theta"])
            q, k, v = qkv[..., :D], qkv[..., D : 2 * D], qkv[..., 2 * D :]
            for name, z in (("q", q), ("k", k), ("v", v)):
                keep(p + name, z)
            if art.attention == "sdsa3":
                qh, kh, vh = (z.reshape(B, N, H, dh).transpose(1, 2) for z in (q, k, v))
                m = torch.clamp_max(kh.transpose(-1, -2) @ vh, SDSA_SATURATION)
                xa = torch.clamp_max(qh @ m, SDSA_SATURATION).transpose(1, 2).reshape(B, N, D)
                a = lif(p + "attn", xa, SDSA_THETA)
            else:
                keep(p + "kv", k * v)
                a = q * ((k * v).sum(dim=1, keepdim=True) >= 1).to(torch.int64)
                keep(p + "attn", a)
            u = u + a @ t[p + "proj.weight"].T + t[p + "proj.bias"]
            s = lif(p + "lif2", u, t[p + "lif2.theta"])
            h = lif(p + "fc1", s @ t[p + "fc1.weight"].T + t[p + "fc1.bias"], t[p + "fc1.theta"])
            u = u + h @ t[p + "fc2.weight"].T + t[p + "fc2.bias"]
        s = lif("head", u, t["head.theta"])
        logits = logits + s.sum(dim=1) @ t["head.weight"].T + N * t["head.bias"]
    return logits
