"""Float pre-training and QAT fine-tuning of :class:`~equispike.quant.qvit.QViT` on digits.

Stage 1 trains the float model (ReLU MLP, no quantizers). Stage 2 copies it, calibrates every LSQ
step on one training batch (``2·mean|x|/√Qp``), enables int8 weight fake-quant and all activation
sites, and fine-tunes with cross-entropy plus distillation from the float model (KL at temperature
``kd_temperature``, weight ``kd_weight``). Everything is seeded; with the same seeds and device the
run is reproducible (``torch.use_deterministic_algorithms`` is enabled during training).

Checkpoints are ``torch.save`` dicts ``{format, version, stage, model_config, train_config,
state_dict, history, meta}``; :func:`load_checkpoint` raises :class:`CheckpointError` naming the
problem for a corrupt file or a mismatched configuration / state dict.
"""

from __future__ import annotations

import copy
import math
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .data import DigitsSplit, augment_shift, load_split
from .qvit import QViT, ViTConfig

__all__ = [
    "TrainConfig",
    "CheckpointError",
    "Progress",
    "save_checkpoint",
    "load_checkpoint",
    "accuracy",
    "train_float",
    "train_qat",
    "train_all",
    "resolve_device",
]

CKPT_FORMAT = "equispike-quant-checkpoint"
CKPT_VERSION = 1


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0
    split_seed: int = 0
    test_fraction: float = 0.2
    batch_size: int = 64
    float_epochs: int = 200
    float_lr: float = 2e-3
    qat_epochs: int = 60
    qat_lr: float = 5e-4
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    augment_shift: int = 1
    kd_weight: float = 0.5
    kd_temperature: float = 2.0
    warmup_epochs: int = 3

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"TrainConfig: unknown fields {unknown}")
        return cls(**d)


class CheckpointError(ValueError):
    """A corrupt, foreign or mismatched checkpoint; the message names the problem."""


# --------------------------------------------------------------------------------------------------
# progress
# --------------------------------------------------------------------------------------------------
class Progress:
    """A tiny tqdm-like progress printer on stderr: ``[tag] 12/60 |#####.....| key=val ...``.

    On a terminal it redraws one line; otherwise it prints one line per update (every ``every``).
    """

    def __init__(self, tag: str, total: int, stream=None, quiet: bool = False, every: int = 1):
        self.tag, self.total = tag, total
        self.stream = stream if stream is not None else sys.stderr
        self.quiet = quiet
        self.every = max(1, every)
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.t0 = time.perf_counter()

    def update(self, i: int, **info: Any) -> None:
        if self.quiet or (i % self.every and i != self.total):
            return
        width = 20
        done = int(width * i / max(1, self.total))
        bar = "#" * done + "." * (width - done)
        kv = " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in info.items())
        line = f"[{self.tag}] {i}/{self.total} |{bar}| {kv} ({time.perf_counter() - self.t0:.1f}s)"
        if self.tty:
            self.stream.write("\r" + line + ("\n" if i == self.total else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


# --------------------------------------------------------------------------------------------------
# checkpoints
# --------------------------------------------------------------------------------------------------
def save_checkpoint(
    path: str | os.PathLike,
    model: QViT,
    stage: str,
    train_cfg: TrainConfig,
    history: list[dict] | None = None,
    meta: dict | None = None,
) -> Path:
    """Write a checkpoint atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = {
        "format": CKPT_FORMAT,
        "version": CKPT_VERSION,
        "stage": stage,
        "model_config": model.cfg.to_dict(),
        "train_config": train_cfg.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "history": history or [],
        "meta": meta or {},
    }
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(blob, f)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(
    path: str | os.PathLike,
    expect_stage: str | None = None,
    expect_config: ViTConfig | None = None,
    map_location: str = "cpu",
) -> tuple[QViT, dict]:
    """Load a checkpoint into a fresh :class:`QViT` (quantization enabled for ``qat`` checkpoints).

    Returns ``(model, blob)``. Raises :class:`CheckpointError` if the file is missing, unreadable,
    not an equispike checkpoint, of another stage or model configuration than expected, or if its
    state dict does not fit the configuration (missing/unexpected keys, shape mismatches).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        blob = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged file
        raise CheckpointError(f"{path}: corrupt or unreadable checkpoint ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    if not isinstance(blob, dict) or blob.get("format") != CKPT_FORMAT:
        raise CheckpointError(f"{path}: not an equispike quant checkpoint (format field missing)")
    if blob.get("version") != CKPT_VERSION:
        raise CheckpointError(f"{path}: checkpoint version {blob.get('version')!r}, "
                              f"this code reads {CKPT_VERSION}")
    stage = blob.get("stage")
    if stage not in ("float", "qat"):
        raise CheckpointError(f"{path}: unknown stage {stage!r}")
    if expect_stage is not None and stage != expect_stage:
        raise CheckpointError(f"{path}: expected a {expect_stage!r} checkpoint, got {stage!r}")
    try:
        cfg = ViTConfig.from_dict(dict(blob["model_config"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: bad model_config ({exc})") from None
    if expect_config is not None and cfg != expect_config:
        diff = {k: (v, getattr(expect_config, k)) for k, v in cfg.to_dict().items()
                if getattr(expect_config, k) != v}
        raise CheckpointError(f"{path}: model_config mismatch (checkpoint, expected): {diff}")
    model = QViT(cfg)
    sd = blob.get("state_dict")
    if not isinstance(sd, dict):
        raise CheckpointError(f"{path}: state_dict missing")
    want = model.state_dict()
    missing = sorted(set(want) - set(sd))
    unexpected = sorted(set(sd) - set(want))
    if missing or unexpected:
        raise CheckpointError(f"{path}: state_dict does not match model_config: "
                              f"missing {missing}, unexpected {unexpected}")
    for k, v in want.items():
        if not isinstance(sd[k], torch.Tensor) or tuple(sd[k].shape) != tuple(v.shape):
            got = tuple(sd[k].shape) if isinstance(sd[k], torch.Tensor) else type(sd[k]).__name__
            raise CheckpointError(f"{path}: state_dict[{k!r}] has shape {got}, "
                                  f"model_config needs {tuple(v.shape)}")
        if v.is_floating_point() and not torch.isfinite(sd[k]).all():
            raise CheckpointError(f"{path}: state_dict[{k!r}] contains non-finite values")
    model.load_state_dict(sd, strict=True)
    if stage == "qat":
        not_init = [n for n, q in model.sites().items() if not bool(q.initialized)]
        if not_init:
            raise CheckpointError(f"{path}: qat checkpoint with uninitialized steps at {not_init}")
        model.set_quant(True)
    model.eval()
    return model, blob


# --------------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------------
def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda requested but CUDA is not available")
    return torch.device(name)


@torch.no_grad()
def accuracy(model: QViT, x: np.ndarray, y: np.ndarray, device="cpu", batch: int = 512) -> float:
    """Top-1 accuracy of ``model`` (in eval mode) on integer images ``x``."""
    was = model.training
    model.eval()
    correct = 0
    for i in range(0, len(y), batch):
        xb = torch.as_tensor(x[i : i + batch], device=device)
        correct += int((model(xb).argmax(-1).cpu().numpy() == y[i : i + batch]).sum())
    model.train(was)
    return correct / max(1, len(y))


def _schedule(opt: torch.optim.Optimizer, base_lr: float, step: int, total: int, warmup: int) -> None:
    if step < warmup:
        lr = base_lr * (step + 1) / warmup
    else:
        lr = 0.5 * base_lr * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))
    for g in opt.param_groups:
        g["lr"] = lr * g.get("lr_mult", 1.0)


def _run_epochs(
    model: QViT,
    data: DigitsSplit,
    tc: TrainConfig,
    epochs: int,
    lr: float,
    tag: str,
    device: torch.device,
    teacher: QViT | None = None,
    quiet: bool = False,
) -> list[dict]:
    gen = torch.Generator().manual_seed(tc.seed + (1 if teacher is not None else 0))
    decay, no_decay, steps = [], [], []
    for n, p in model.named_parameters():
        if n.endswith(".step"):
            steps.append(p)
        elif p.dim() >= 2 and n not in ("pos",):
            decay.append(p)
        else:
            no_decay.append(p)
    groups = [{"params": decay, "weight_decay": tc.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if steps and model.quantized:
        groups.append({"params": steps, "weight_decay": 0.0})
    opt = torch.optim.AdamW(groups, lr=lr)
    xtr = torch.as_tensor(data.x_train)
    ytr = torch.as_tensor(data.y_train)
    n = len(ytr)
    per_epoch = math.ceil(n / tc.batch_size)
    total = epochs * per_epoch
    warmup = min(tc.warmup_epochs * per_epoch, total // 2) if teacher is None else per_epoch
    prog = Progress(tag, epochs, quiet=quiet)
    history = []
    step = 0
    for ep in range(epochs):
        model.train()
        perm = torch.randperm(n, generator=gen)
        tot_loss, tot_ok = 0.0, 0
        for i in range(0, n, tc.batch_size):
            idx = perm[i : i + tc.batch_size]
            xb = augment_shift(xtr[idx], gen, tc.augment_shift).to(device)
            yb = ytr[idx].to(device)
            _schedule(opt, lr, step, total, warmup)
            out = model(xb)
            loss = F.cross_entropy(out, yb, label_smoothing=tc.label_smoothing)
            if teacher is not None and tc.kd_weight > 0:
                with torch.no_grad():
                    t_out = teacher(xb)
                T = tc.kd_temperature
                kd = F.kl_div(F.log_softmax(out / T, -1), F.log_softmax(t_out / T, -1),
                              reduction="batchmean", log_target=True) * T * T
                loss = (1 - tc.kd_weight) * loss + tc.kd_weight * kd
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            tot_loss += loss.item() * len(idx)
            tot_ok += int((out.argmax(-1) == yb).sum())
        test_acc = accuracy(model, data.x_test, data.y_test, device)
        rec = {"epoch": ep + 1, "loss": tot_loss / n, "train_acc": tot_ok / n, "test_acc": test_acc}
        history.append(rec)
        prog.update(ep + 1, loss=rec["loss"], train_acc=rec["train_acc"], test_acc=test_acc)
    model.eval()
    return history


def _seed_all(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)


def train_float(
    mc: ViTConfig, tc: TrainConfig, data: DigitsSplit, device: torch.device, quiet: bool = False
) -> tuple[QViT, list[dict]]:
    _seed_all(tc.seed)
    model = QViT(mc).to(device)
    hist = _run_epochs(model, data, tc, tc.float_epochs, tc.float_lr, "float", device, quiet=quiet)
    return model, hist


def train_qat(
    float_model: QViT, tc: TrainConfig, data: DigitsSplit, device: torch.device, quiet: bool = False
) -> tuple[QViT, list[dict]]:
    _seed_all(tc.seed + 1)
    teacher = copy.deepcopy(float_model).set_quant(False).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    model = copy.deepcopy(float_model)
    gen = torch.Generator().manual_seed(tc.seed + 2)
    idx = torch.randperm(len(data.y_train), generator=gen)[: max(tc.batch_size, 256)]
    model.calibrate(torch.as_tensor(data.x_train[idx.numpy()]).to(device))
    hist = _run_epochs(model, data, tc, tc.qat_epochs, tc.qat_lr, "qat", device,
                       teacher=teacher, quiet=quiet)
    return model, hist


_FLOAT_KEYS = ("seed", "split_seed", "test_fraction", "batch_size", "float_epochs", "float_lr",
               "weight_decay", "label_smoothing", "augment_shift", "warmup_epochs")
_QUANT_ONLY = ("levels", "residual_bits")


def _reuse_float(fpath: Path, mc: ViTConfig, tc: TrainConfig) -> tuple[QViT | None, dict]:
    """A float checkpoint trained with the same architecture and float-stage settings, rebuilt with
    ``mc`` (levels and R only matter for QAT), or ``(None, [])``."""
    try:
        fm, blob = load_checkpoint(fpath, expect_stage="float")
        old = TrainConfig.from_dict(blob["train_config"])
    except (CheckpointError, KeyError, TypeError, ValueError):
        return None, {}
    same_arch = all(getattr(fm.cfg, k) == getattr(mc, k)
                    for k in mc.to_dict() if k not in _QUANT_ONLY)
    if not same_arch or any(getattr(old, k) != getattr(tc, k) for k in _FLOAT_KEYS):
        return None, {}
    model = QViT(mc)
    model.load_state_dict(fm.state_dict())
    model.eval()
    print(f"[float] reusing {fpath}", file=sys.stderr)
    return model, blob


def train_all(
    mc: ViTConfig,
    tc: TrainConfig,
    out_dir: str | os.PathLike,
    device: str = "cpu",
    quiet: bool = False,
    reuse_float: bool = True,
) -> dict:
    """Float pre-training (or reuse of a matching ``float.pt``) then QAT; writes ``float.pt`` and
    ``qat.pt`` in ``out_dir``. Returns a summary dict (accuracies, wall times, paths)."""
    torch.use_deterministic_algorithms(True, warn_only=True)
    dev = resolve_device(device)
    out = Path(out_dir)
    data = load_split(tc.split_seed, tc.test_fraction)
    fpath, qpath = out / "float.pt", out / "qat.pt"
    t0 = time.perf_counter()
    fmodel = None
    if reuse_float and fpath.is_file():
        fmodel, fblob = _reuse_float(fpath, mc, tc)
    reused = fmodel is not None
    if fmodel is None:
        fmodel, fhist = train_float(mc, tc, data, dev, quiet=quiet)
        fblob = {"meta": {"seconds": time.perf_counter() - t0}}
        save_checkpoint(fpath, fmodel, "float", tc, fhist, fblob["meta"])
    fmodel.to(dev)
    t1 = time.perf_counter()
    float_seconds = float(fblob.get("meta", {}).get("seconds", t1 - t0))
    float_acc = accuracy(fmodel, data.x_test, data.y_test, dev)
    qmodel, qhist = train_qat(fmodel, tc, data, dev, quiet=quiet)
    t2 = time.perf_counter()
    fq_acc = accuracy(qmodel, data.x_test, data.y_test, dev)
    meta = {"float_test_acc": float_acc, "fake_quant_test_acc": fq_acc,
            "float_seconds": float_seconds, "float_reused": reused,
            "qat_seconds": t2 - t1, "device": str(dev), "split": data.describe()}
    save_checkpoint(qpath, qmodel.cpu(), "qat", tc, qhist, meta)
    return {**meta, "float_checkpoint": str(fpath), "qat_checkpoint": str(qpath),
            "train_seconds": float_seconds + (t2 - t1)}
