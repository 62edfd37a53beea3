"""Whole-model equivalence check: the time-stepped SNN, summed over time, against the integer QANN."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .artifact import ViTArtifact
from .factory import random_images, random_vit
from .parallel import check_threads, ordered_map
from .vit import ViTSNN, qann_forward

__all__ = ["Tally", "CaseResult", "compare", "random_case_config", "check_random", "check_artifact"]


@dataclass
class Tally:
    """An exact comparison of one model on one batch: elements compared, mismatches, the first."""

    name: str
    elements: int = 0
    mismatches: int = 0
    first_mismatch: dict | None = None
    steps: int = 0


@dataclass
class CaseResult(Tally):
    """Comparison of one model on one batch: every site's settled codes and the logits."""

    settle_steps: list[int] = field(default_factory=list)
    unsettled: int = 0


def tally_pairs(res, case: str, pairs, *, what: str = "site", want_key: str = "expected",
                got_key: str = "got", ref: str = "QANN") -> None:
    """Compare every ``(label, want, got)`` array pair exactly into ``res`` (its ``elements``,
    ``mismatches`` and ``first_mismatch``, the latter named by ``what``, ``want_key``, ``got_key``);
    a shape difference is an error naming ``ref``, the side that defines the shape."""
    for label, want, got in pairs:
        if want.shape != got.shape:
            raise AssertionError(f"{case}: {label} shape {got.shape} != {ref} {want.shape}")
        res.elements += want.size
        bad = want != got
        n = int(bad.sum())
        if n and res.first_mismatch is None:
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            res.first_mismatch = {
                "case": case,
                what: label,
                "index": list(idx),
                want_key: int(want[idx]),
                got_key: int(got[idx]),
            }
        res.mismatches += n


def compare(name: str, art: ViTArtifact, images: np.ndarray, t_max: int = 2048) -> CaseResult:
    """Run QANN and SNN on ``images`` and compare every site code and every logit exactly."""
    q = qann_forward(art, images)
    s = ViTSNN(art).run(images, t_max=t_max)
    res = CaseResult(name=name, steps=s.steps)
    pairs = [(k, q.codes[k], s.codes[k]) for k in q.codes] + [("logits", q.logits, s.logits)]
    tally_pairs(res, name, pairs)
    res.settle_steps = [int(v) for v in s.settle_step if v >= 0]
    res.unsettled = int((s.settle_step < 0).sum())
    return res


_DIMS = [  # (image, patch, dim, heads)
    (8, 2, 16, 2),
    (8, 2, 32, 2),
    (8, 4, 32, 4),
    (8, 2, 24, 3),
    (8, 4, 64, 4),
    (4, 2, 16, 1),
]
_LEVELS = [4, 8, 16, 32]


def _positive(name: str, v) -> None:
    if not isinstance(v, int) or isinstance(v, bool):
        raise TypeError(f"{name} must be an integer, got {type(v).__name__}")
    if v < 1:
        raise ValueError(f"{name} must be >= 1 (nothing would be compared), got {v}")


def random_case_config(i: int, seed: int = 0) -> dict:
    """The i-th random model configuration of the check (depth 1–4, levels 4–32, several dims)."""
    rng = np.random.default_rng([seed, i])
    image, patch, dim, heads = _DIMS[int(rng.integers(len(_DIMS)))]
    return dict(
        seed=int(rng.integers(2**31)),
        image=image,
        patch=patch,
        dim=dim,
        heads=heads,
        depth=int(rng.integers(1, 5)),
        levels=_LEVELS[int(rng.integers(len(_LEVELS)))],
        mlp_ratio=int(rng.integers(1, 3)),
        classes=int(rng.integers(2, 11)),
    )


def _summary(results: list[CaseResult]) -> dict:
    """Totals of a check; ``ok`` only if something was compared, nothing differed and every image
    settled (a check that compared nothing has not shown anything)."""
    steps = [v for r in results for v in r.settle_steps]
    first = next((r.first_mismatch for r in results if r.first_mismatch), None)
    elements = sum(r.elements for r in results)
    mismatches = sum(r.mismatches for r in results)
    unsettled = sum(r.unsettled for r in results)
    return {
        "ok": elements > 0 and mismatches == 0 and unsettled == 0,
        "cases": len(results),
        "images": sum(len(r.settle_steps) + r.unsettled for r in results),
        "elements_compared": elements,
        "mismatches": mismatches,
        "first_mismatch": first,
        "unsettled_images": unsettled,
        "settle_step": {
            "min": min(steps) if steps else None,
            "median": statistics.median(steps) if steps else None,
            "max": max(steps) if steps else None,
            "mean": round(statistics.fmean(steps), 2) if steps else None,
        },
    }


def _random_case(i: int, seed: int, batch: int, t_max: int) -> tuple[CaseResult, dict]:
    """Case i of a random check: its model and images follow from (seed, i) alone, so it can run in
    any process and in any order."""
    cfg = random_case_config(i, seed)
    art = random_vit(**cfg)
    images = random_images(cfg["seed"] + 7, art, batch)
    return compare(f"random[{i}]", art, images, t_max=t_max), cfg


def check_random(
    cases: int,
    batch: int = 8,
    seed: int = 0,
    t_max: int = 2048,
    progress: Callable[[int, CaseResult, dict], None] | None = None,
    threads: int = 1,
) -> dict:
    """Build ``cases`` random models and inputs; compare SNN and QANN on each. Returns the summary.

    ``threads`` worker processes share the cases; the summary, and the order of the ``progress``
    calls, do not depend on it."""
    _positive("cases", cases)
    _positive("batch", batch)
    check_threads(threads)
    tasks = [(i, seed, batch, t_max) for i in range(cases)]

    def done(i: int, rc: tuple[CaseResult, dict]) -> None:
        if progress is not None:
            progress(i, *rc)

    pairs = ordered_map(_random_case, tasks, threads, done)
    return _summary([r for r, _ in pairs])


def _artifact_batch(name: str, art: ViTArtifact, images: np.ndarray, t_max: int) -> CaseResult:
    return compare(name, art, images, t_max=t_max)


def check_artifact(art: ViTArtifact, images: np.ndarray, t_max: int = 2048, batch: int = 64,
                   threads: int = 1) -> dict:
    """Compare SNN and QANN of one artifact on ``images``, in batches (shared by ``threads`` worker
    processes; the batches, hence the summary, do not depend on it)."""
    _positive("batch", batch)
    check_threads(threads)
    if len(images) == 0:
        raise ValueError("images: need at least one image to compare")
    tasks = [(f"batch[{i // batch}]", art, images[i : i + batch], t_max)
             for i in range(0, len(images), batch)]
    return _summary(ordered_map(_artifact_batch, tasks, threads))
