"""LSQ activation quantizers and int8 weight fake-quantization (SPEC §2, §3).

The forward pass mirrors the integer quantizer of the golden model: a site with step ``s`` maps a
real value ``x`` to the code ``n = clamp(floor(x/s + 1/2), Qn, Qp)`` (round half up) and outputs
``n·s``; the integer form is ``clamp(floor((A + floor(Θ/2)) / Θ), Qn, Qp)`` with ``Θ = round(s/u)``.
Gradients use the straight-through estimator for the rounding and the LSQ step gradient scaled by
``g = 1/√(N·Qp)``, where ``N`` is the number of elements of the site per sample.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..model.neurons import site_bounds

__all__ = [
    "round_half_up",
    "round_ste",
    "grad_scale",
    "LSQQuantizer",
    "weight_scale",
    "weight_codes",
    "fake_quant_weight",
    "WEIGHT_QMAX",
]

WEIGHT_QMAX = 127  # symmetric int8: codes in [-127, 127]


def round_half_up(x: torch.Tensor) -> torch.Tensor:
    """``floor(x + 1/2)``: ties go up (towards +inf), matching ``floor((A + floor(Θ/2)) / Θ)``."""
    return torch.floor(x + 0.5)


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Round half up in the forward pass, identity gradient (straight-through estimator)."""
    return x + (round_half_up(x) - x).detach()


def grad_scale(x: torch.Tensor, g: float) -> torch.Tensor:
    """Value ``x``, gradient multiplied by ``g``."""
    return (x - x * g).detach() + x * g


class LSQQuantizer(nn.Module):
    """A learned-step quantizer site (LSQ, Esser et al. 2020).

    ``levels`` levels, signed ``[-L/2, L/2-1]`` or unsigned ``[0, L-1]``. The step is a scalar
    parameter stored as ``step`` and initialized from the first batch seen while ``enabled`` and not
    yet ``initialized`` (``s = 2·mean|x|/√Qp``). When ``enabled`` is False the module is the identity
    (float model).
    """

    def __init__(self, name: str, levels: int, signed: bool):
        super().__init__()
        self.name = name
        self.levels = int(levels)
        self.signed = bool(signed)
        self.qn, self.qp = site_bounds(self.levels, self.signed)
        self.step = nn.Parameter(torch.tensor(1.0))
        self.register_buffer("initialized", torch.tensor(False))
        self.enabled = False
        self.record = False  # keep the codes of the last forward in ``last_codes`` (diagnostics)
        self.last_codes: torch.Tensor | None = None

    def extra_repr(self) -> str:
        return f"{self.name}, levels={self.levels}, signed={self.signed}, enabled={self.enabled}"

    @torch.no_grad()
    def init_from(self, x: torch.Tensor) -> None:
        s = 2.0 * x.detach().abs().mean().item() / math.sqrt(self.qp)
        self.step.fill_(max(s, 1e-4))
        self.initialized.fill_(True)

    def forward(
        self, x: torch.Tensor, unit: torch.Tensor | float | None = None, out_step=None
    ) -> torch.Tensor:
        """Fake-quantize ``x``.

        ``unit`` (scalar or per channel on the last axis) is the integer unit of the site's input
        ``u``; the rounding boundaries then use the step the integer QANN realizes,
        ``Θ·u`` with ``Θ = max(1, round(s/u))`` (rounded with a straight-through gradient), so the
        fake-quant codes are the integer codes. The output is ``n·s`` (the code's nominal real value,
        which is what the next layer's integer unit assumes), or ``n·out_step(s)`` when
        ``out_step`` is given (residual branch sites: ``M·2^-R``).
        """
        if not self.enabled:
            return x
        if not bool(self.initialized):
            self.init_from(x)
        n_per_sample = x[0].numel() if x.dim() > 1 else x.numel()
        g = 1.0 / math.sqrt(n_per_sample * self.qp)
        s = grad_scale(self.step, g)
        if unit is None:
            s_round = s
        else:
            unit = torch.as_tensor(unit, dtype=x.dtype, device=x.device).detach()
            s_round = torch.clamp(round_ste(s / unit), min=1.0) * unit
        n = round_ste(torch.clamp(x / s_round, self.qn, self.qp))
        if self.record:
            self.last_codes = n.detach().to(torch.int64)
        return n * (s if out_step is None else out_step(s))

    @torch.no_grad()
    def codes(self, x: torch.Tensor, unit: torch.Tensor | float | None = None) -> torch.Tensor:
        """Integer codes of the float input (no gradient), with the same ``unit`` rule as forward."""
        s = self.step.detach()
        if unit is not None:
            unit = torch.as_tensor(unit, dtype=x.dtype, device=x.device)
            s = torch.clamp(round_half_up(s / unit), min=1.0) * unit
        return torch.clamp(round_half_up(x / s), self.qn, self.qp).to(torch.int64)


def weight_scale(w: torch.Tensor, per_channel: bool = True) -> torch.Tensor:
    """Symmetric int8 scale: ``max|w| / 127`` per output channel (rows), or one for the tensor.

    Returned with shape ``(out, 1)`` (per channel) or ``()``; never zero. Not differentiated.
    """
    w = w.detach()
    m = w.abs().amax(dim=1, keepdim=True) if per_channel else w.abs().max()
    return torch.clamp(m, min=1e-8) / WEIGHT_QMAX


def weight_codes(w: torch.Tensor, per_channel: bool = True) -> torch.Tensor:
    """Integer int8 weight codes (int64 tensor in [-127, 127])."""
    s = weight_scale(w, per_channel)
    return torch.clamp(round_half_up(w.detach() / s), -WEIGHT_QMAX, WEIGHT_QMAX).to(torch.int64)


def fake_quant_weight(w: torch.Tensor, per_channel: bool = True) -> torch.Tensor:
    """``clamp(round(w/s), -127, 127)·s`` with straight-through gradient to ``w``."""
    s = weight_scale(w, per_channel)
    return round_ste(torch.clamp(w / s, -WEIGHT_QMAX, WEIGHT_QMAX)) * s
