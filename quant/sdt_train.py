"""Training of the spike-driven transformer on digits: float phase, then the integer-aware phase.

Both phases are seeded and run with deterministic algorithms, so the same configuration gives the
same parameters and the same exported artifact bytes on the same machine and PyTorch build. The
float phase's test accuracy is recorded in the artifact's ``meta`` (``float_test_acc``) beside the
integer one (``int_test_acc``, :func:`~equispike.quant.sdt.forward_int` on the exported integers).
"""

from __future__ import annotations

import copy
import math
import sys
import time
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..model.sdt import SDTArtifact
from .data import DigitsSplit, augment_shift, load_split
from .sdt import SDTConfig, SDTNet, forward_int

__all__ = ["SDTTrainConfig", "train_sdt", "accuracy_float", "accuracy_int"]


@dataclass(frozen=True)
class SDTTrainConfig:
    """Training hyper-parameters (defaults reach the README figures)."""

    seed: int = 0
    split_seed: int = 0
    test_fraction: float = 0.2
    batch_size: int = 64
    float_epochs: int = 100
    float_lr: float = 1e-2
    int_epochs: int = 20
    int_lr: float = 5e-4
    weight_decay: float = 0.01
    shift: int = 1
    kd_weight: float = 0.5
    kd_temperature: float = 2.0

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
                raise ValueError(f"{f.name} must be a finite number >= 0, got {v!r}")
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")

    def to_dict(self) -> dict:
        return asdict(self)


def _seed(seed: int) -> torch.Generator:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    return torch.Generator().manual_seed(seed)


@torch.no_grad()
def accuracy_float(model: SDTNet, x: np.ndarray, y: np.ndarray, batch: int = 512) -> float:
    """Accuracy of the model's own forward (float phase or integer-aware phase)."""
    model.eval()
    hits = 0
    for i in range(0, len(y), batch):
        out = model(torch.from_numpy(x[i : i + batch]))
        hits += int((out.argmax(1).numpy() == y[i : i + batch]).sum())
    return hits / max(1, len(y))


def accuracy_int(art: SDTArtifact, x: np.ndarray, y: np.ndarray, timesteps: int | None = None) -> float:
    """Accuracy of the exported integers run by :func:`forward_int`."""
    logits = forward_int(art, x, timesteps)
    return float((logits.argmax(1).numpy() == y).mean()) if len(y) else 0.0


def _epochs(
    model: SDTNet,
    data: DigitsSplit,
    epochs: int,
    lr: float,
    tc: SDTTrainConfig,
    gen: torch.Generator,
    teacher: SDTNet | None,
    tag: str,
    log,
) -> None:
    if epochs == 0:
        return
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=tc.weight_decay)
    xtr = torch.from_numpy(data.x_train)
    ytr = torch.from_numpy(data.y_train)
    n = len(ytr)
    steps_per_epoch = math.ceil(n / tc.batch_size)
    total = epochs * steps_per_epoch
    step = 0
    for ep in range(epochs):
        model.train()
        perm = torch.randperm(n, generator=gen)
        loss_sum = 0.0
        for i in range(0, n, tc.batch_size):
            idx = perm[i : i + tc.batch_size]
            xb = augment_shift(xtr[idx], gen, tc.shift)
            for g in opt.param_groups:
                g["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / total))
            out = model(xb)
            loss = F.cross_entropy(out, ytr[idx])
            if teacher is not None and tc.kd_weight > 0:
                with torch.no_grad():
                    tlog = teacher(xb)
                Tk = tc.kd_temperature
                kd = F.kl_div(F.log_softmax(out / Tk, 1), F.softmax(tlog / Tk, 1), reduction="batchmean")
                loss = loss + tc.kd_weight * Tk * Tk * kd
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += float(loss.detach()) * len(idx)
            step += 1
        log(f"[{tag}] epoch {ep + 1}/{epochs} loss {loss_sum / n:.4f}")


def train_sdt(
    mc: SDTConfig, tc: SDTTrainConfig, quiet: bool = False, data: DigitsSplit | None = None
) -> tuple[SDTArtifact, dict[str, Any]]:
    """Train float, then integer-aware; return the exported artifact and a summary.

    Parameters
    ----------
    mc, tc:
        Model and training configuration.
    quiet:
        No progress lines on stderr.
    data:
        The split (loaded from ``tc`` when None; tests pass a subset).

    Returns
    -------
    (SDTArtifact, dict)
        The validated artifact (``meta`` records both configurations and the accuracies) and a
        summary with accuracies and wall times.
    """

    def log(msg: str) -> None:
        if not quiet:
            print(msg, file=sys.stderr)

    data = data if data is not None else load_split(tc.split_seed, tc.test_fraction)
    prev = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        gen = _seed(tc.seed)
        model = SDTNet(mc)
        t0 = time.perf_counter()
        _epochs(model, data, tc.float_epochs, tc.float_lr, tc, gen, None, "float", log)
        t1 = time.perf_counter()
        float_acc = accuracy_float(model, data.x_test, data.y_test)
        log(f"[float] test accuracy {float_acc:.4f}")
        teacher = copy.deepcopy(model).eval() if tc.float_epochs else None
        model.integer = True
        _epochs(model, data, tc.int_epochs, tc.int_lr, tc, gen, teacher, "int", log)
        t2 = time.perf_counter()
    finally:
        torch.use_deterministic_algorithms(prev)
    meta = {
        "model_config": mc.to_dict(),
        "train_config": tc.to_dict(),
        "float_test_acc": float_acc,
        "split": data.describe(),
    }
    art = model.export(meta)
    int_acc = accuracy_int(art, data.x_test, data.y_test)
    art.meta["int_test_acc"] = int_acc
    log(f"[int] test accuracy (exported integers) {int_acc:.4f}")
    summary = {
        "float_test_acc": float_acc,
        "int_test_acc": int_acc,
        "float_seconds": t1 - t0,
        "int_seconds": t2 - t1,
    }
    return art, summary
