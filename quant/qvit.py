"""A small SpikeZIP-family ViT in PyTorch, with LSQ fake-quantization at every SPEC §7 site.

The fake-quant forward mirrors the integer QANN of :mod:`equispike.model.vit` step for step:
integer image codes scaled by ``input_unit`` → patches (same ordering as ``model.vit.patchify``) →
int8 linear → ``patch_embed`` site → residual stream (float here, fixed point ``2^-R`` in integers,
never quantized to levels) with class token and position embedding → pre-LN blocks:
LN1 → ``norm1`` → qkv → ``q``/``k``/``v`` → softmax(q·kᵀ/√d_h) → ``attn`` (unsigned) → attn·v →
``after_attn`` → proj → ``proj`` → residual add → LN2 → ``norm2`` → fc1 → ReLU → ``fc1`` (unsigned)
→ fc2 → ``fc2`` → residual add; final LN → ``norm`` → int8 head on the class token.

With quantization disabled (:meth:`QViT.set_quant`) the same module is the float model (ReLU MLP).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from ..model.artifact import DerivedDims
from ..model.neurons import check_levels
from .lsq import LSQQuantizer, fake_quant_weight, round_ste, weight_scale

__all__ = ["ViTConfig", "QLinear", "QBlock", "QViT", "patchify_torch", "INPUT_MAX", "INPUT_UNIT"]

INPUT_MAX = 16  # digits pixels are integers 0..16
INPUT_UNIT = 1.0 / INPUT_MAX
LN_P = 10  # integer LayerNorm output unit 2^-LN_P (SPEC section 5 default)
SOFTMAX_P = 12  # integer softmax output unit 2^-SOFTMAX_P


@dataclass(frozen=True)
class ViTConfig(DerivedDims):
    """Model hyper-parameters. ``levels`` applies to every activation site (8, 16 or 32 typical)."""

    image: int = 8
    channels: int = 1
    patch: int = 2
    dim: int = 64
    depth: int = 2
    heads: int = 4
    mlp_ratio: int = 2
    classes: int = 10
    levels: int = 16
    ln_eps: float = 1e-5
    residual_bits: int = 8  # R: residual stream unit 2^-R (mirrored in training, used at export)

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "ln_eps":
                if not isinstance(v, int | float) or v <= 0:
                    raise ValueError(f"ViTConfig.ln_eps must be > 0, got {v!r}")
                continue
            lo = 0 if f.name in ("depth", "residual_bits") else 1
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise ValueError(f"ViTConfig.{f.name} must be a positive integer, got {v!r}")
        if self.image % self.patch:
            raise ValueError(f"ViTConfig.patch ({self.patch}) must divide image ({self.image})")
        if self.dim % self.heads:
            raise ValueError(f"ViTConfig.heads ({self.heads}) must divide dim ({self.dim})")
        check_levels(self.levels, "ViTConfig.levels")

    @property
    def mlp_dim(self) -> int:
        return self.dim * self.mlp_ratio


    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ViTConfig:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"ViTConfig: unknown fields {unknown}")
        return cls(**d)


def patchify_torch(images: torch.Tensor, patch: int) -> torch.Tensor:
    """``(B, C, H, W)`` or ``(B, H, W)`` → ``(B, N_p, C·p·p)``, the ordering of ``model.vit.patchify``."""
    x = images if images.dim() == 4 else images.unsqueeze(1)
    B, C, H, W = x.shape
    p = patch
    x = x.reshape(B, C, H // p, p, W // p, p).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(B, (H // p) * (W // p), C * p * p)


class QLinear(nn.Linear):
    """Linear layer whose weight is int8 fake-quantized (per output channel, or one scale)."""

    def __init__(self, fan_in: int, fan_out: int, per_channel: bool = True):
        super().__init__(fan_in, fan_out, bias=True)
        self.per_channel = per_channel
        self.quant = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = fake_quant_weight(self.weight, self.per_channel) if self.quant else self.weight
        return F.linear(x, w, self.bias)

    def unit(self, s_in: torch.Tensor | float) -> torch.Tensor:
        """Accumulator unit per output channel ``s_w,c · s_in`` (detached), SPEC section 3."""
        s_in = torch.as_tensor(s_in).detach()
        return (weight_scale(self.weight, self.per_channel).reshape(-1) * s_in).detach()


class QBlock(nn.Module):
    def __init__(self, cfg: ViTConfig):
        super().__init__()
        D, L = cfg.dim, cfg.levels
        self.heads = cfg.heads
        self.scale = 1.0 / math.sqrt(cfg.head_dim)
        self.ln1 = nn.LayerNorm(D, eps=cfg.ln_eps)
        self.norm1 = LSQQuantizer("norm1", L, True)
        self.qkv = QLinear(D, 3 * D)
        self.q = LSQQuantizer("q", L, True)
        self.k = LSQQuantizer("k", L, True)
        self.v = LSQQuantizer("v", L, True)
        self.attn = LSQQuantizer("attn", L, False)
        self.after_attn = LSQQuantizer("after_attn", L, True)
        self.proj = QLinear(D, D)
        self.proj_q = LSQQuantizer("proj", L, True)
        self.ln2 = nn.LayerNorm(D, eps=cfg.ln_eps)
        self.norm2 = LSQQuantizer("norm2", L, True)
        self.fc1 = QLinear(D, cfg.mlp_dim)
        self.fc1_q = LSQQuantizer("fc1", L, False)
        self.fc2 = QLinear(cfg.mlp_dim, D)
        self.fc2_q = LSQQuantizer("fc2", L, True)
        self.u_r = 2.0 ** -cfg.residual_bits

    def sites(self) -> dict[str, LSQQuantizer]:
        """The ten sites in SPEC §7 order, by their artifact short names."""
        return {
            "norm1": self.norm1, "q": self.q, "k": self.k, "v": self.v, "attn": self.attn,
            "after_attn": self.after_attn, "proj": self.proj_q, "norm2": self.norm2,
            "fc1": self.fc1_q, "fc2": self.fc2_q,
        }

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        B, N, D = x.shape
        return x.reshape(B, N, self.heads, D // self.heads).transpose(1, 2)

    def residual_step(self, s: torch.Tensor) -> torch.Tensor:
        """Real value of one code of a residual branch site: ``M·u_r``, ``M = max(1, round(s/u_r))``."""
        return residual_step(s, self.u_r)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        B, N, D = u.shape
        st = {k: q.step for k, q in self.sites().items()}
        n1 = self.norm1(self.ln1(u), unit=2.0**-LN_P)
        a = self.qkv(n1)
        uq = self.qkv.unit(st["norm1"])
        q = self.q(a[..., :D], unit=uq[:D])
        k = self.k(a[..., D : 2 * D], unit=uq[D : 2 * D])
        v = self.v(a[..., 2 * D :], unit=uq[2 * D :])
        z = self._heads(q) @ self._heads(k).transpose(-1, -2) * self.scale
        att = self.attn(torch.softmax(z, dim=-1), unit=2.0**-SOFTMAX_P)
        o = (att @ self._heads(v)).transpose(1, 2).reshape(B, N, D)
        aa = self.after_attn(o, unit=st["attn"] * st["v"])
        pj = self.proj(aa)
        u = u + self.proj_q(pj, unit=self.proj.unit(st["after_attn"]), out_step=self.residual_step)
        n2 = self.norm2(self.ln2(u), unit=2.0**-LN_P)
        h = self.fc1_q(torch.relu(self.fc1(n2)), unit=self.fc1.unit(st["norm2"]))
        f2 = self.fc2(h)
        return u + self.fc2_q(f2, unit=self.fc2.unit(st["fc1"]), out_step=self.residual_step)


def residual_step(s: torch.Tensor, u_r: float) -> torch.Tensor:
    """``M·u_r`` with ``M = max(1, round(s/u_r))`` (straight-through rounding)."""
    return torch.clamp(round_ste(s / u_r), min=1.0) * u_r


class QViT(nn.Module):
    """The ViT of SPEC §7 for integer images; call with integer codes (any dtype) ``(B, [C,] H, W)``."""

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.cfg = cfg
        D = cfg.dim
        self.patch_embed = QLinear(cfg.patch_dim, D)
        self.patch_q = LSQQuantizer("patch_embed", cfg.levels, True)
        self.cls = nn.Parameter(torch.zeros(D))
        self.pos = nn.Parameter(torch.zeros(cfg.tokens, D))
        self.blocks = nn.ModuleList([QBlock(cfg) for _ in range(cfg.depth)])
        self.norm = nn.LayerNorm(D, eps=cfg.ln_eps)
        self.norm_q = LSQQuantizer("norm", cfg.levels, True)
        self.head = QLinear(D, cfg.classes, per_channel=False)
        nn.init.trunc_normal_(self.pos, std=0.02)
        nn.init.trunc_normal_(self.cls, std=0.02)

    # -- quantization control -----------------------------------------------------------------
    def sites(self) -> dict[str, LSQQuantizer]:
        """Every quantizer site by its artifact name (``patch_embed``, ``blocks.i.<site>``, ``norm``)."""
        out = {"patch_embed": self.patch_q}
        for i, b in enumerate(self.blocks):
            out |= {f"blocks.{i}.{k}": v for k, v in b.sites().items()}
        out["norm"] = self.norm_q
        return out

    def set_quant(self, enabled: bool) -> QViT:
        for q in self.sites().values():
            q.enabled = enabled
        for m in self.modules():
            if isinstance(m, QLinear):
                m.quant = enabled
        return self

    @property
    def quantized(self) -> bool:
        return self.patch_q.enabled

    def site_steps(self) -> dict[str, float]:
        return {k: float(q.step.detach()) for k, q in self.sites().items()}

    # -- forward ------------------------------------------------------------------------------
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        x = patchify_torch(images.to(self.pos.dtype) * INPUT_UNIT, self.cfg.patch)
        u_r = 2.0 ** -self.cfg.residual_bits
        n = self.patch_q(self.patch_embed(x), unit=self.patch_embed.unit(INPUT_UNIT),
                         out_step=lambda s: residual_step(s, u_r))
        cls, pos = self.cls, self.pos
        if self.quantized:  # the integer model holds them in units of 2^-R
            cls, pos = round_ste(cls / u_r) * u_r, round_ste(pos / u_r) * u_r
        cls = cls.expand(n.shape[0], 1, -1)
        return torch.cat([cls, n], dim=1) + pos

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        u = self.embed(images)
        for b in self.blocks:
            u = b(u)
        nf = self.norm_q(self.norm(u), unit=2.0**-LN_P)
        return self.head(nf[:, 0])

    @torch.no_grad()
    def calibrate(self, images: torch.Tensor) -> None:
        """Initialize every site's step from one batch (``2·mean|x|/√Qp``), in network order."""
        for q in self.sites().values():
            q.initialized.fill_(False)
        self.set_quant(True)
        was = self.training
        self.eval()
        self(images)
        self.train(was)
