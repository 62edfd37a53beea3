"""``equispike check`` for the spike-driven transformer: the NumPy golden model
(:func:`~equispike.model.sdt.run_sdt`) against the int64 PyTorch forward
(:func:`~equispike.quant.sdt.forward_int`), two implementations of SPEC §8 that must agree on every
spike of every LIF site and every logit after every step, while the golden model checks every
bounded intermediate against the width analysis (:class:`~equispike.model.sdt.RangeCheck`): a value
outside its proven range is a failure of the check, not an error of the input.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..model.check import Tally, _positive, tally_pairs
from ..model.factory import random_images
from ..model.parallel import check_threads, ordered_map
from ..model.sdt import SDTArtifact, random_sdt, run_sdt

__all__ = ["SDTCaseResult", "compare_sdt", "random_sdt_config", "check_sdt_random", "check_sdt_artifact"]


@dataclass
class SDTCaseResult(Tally):
    """One model on one batch: every spike and the logits after every step, and the width check."""

    images: int = 0
    width_violations: int = 0
    quantities_checked: int = 0


def compare_sdt(name: str, art: SDTArtifact, images: np.ndarray) -> SDTCaseResult:
    """Run both implementations for the artifact's T steps; compare every spike of every LIF site of
    every step (q, k, v apart; SDSA-1's co-active pairs too) and the logits summed over steps
    ``0 … t`` for every t."""
    import torch

    from .sdt import artifact_tensors_torch, forward_int

    res = SDTCaseResult(name=name, images=len(images), steps=art.timesteps)
    try:
        golden = run_sdt(art, images, record=True, probe=True)
    except OverflowError as exc:  # an intermediate outside its proven range: the analysis is wrong
        res.width_violations = 1
        res.first_mismatch = {"case": name, "width": str(exc)}
        return res
    assert golden.extremes is not None and golden.records is not None
    res.quantities_checked = len(golden.extremes)
    tensors = artifact_tensors_torch(art)
    spikes: dict[str, list[torch.Tensor]] = {}
    pairs: list[tuple[str, np.ndarray, np.ndarray]] = []
    for t in range(art.timesteps):
        # forward_int(t + 1) runs steps 0 … t again: its logits are the golden's after step t
        got = forward_int(art, images, t + 1, tensors, spikes if t + 1 == art.timesteps else None)
        pairs.append((f"logits after step {t}", golden.step_logits[t], got.numpy()))
    if sorted(spikes) != sorted(golden.records):
        raise AssertionError(f"{name}: sites {sorted(spikes)} != golden {sorted(golden.records)}")
    for site, rec in golden.records.items():
        pairs.append((site, rec["spikes"], torch.stack(spikes[site]).numpy()))
    tally_pairs(res, name, pairs, what="what", want_key="golden", got_key="pytorch", ref="golden")
    return res


_DIMS = [  # (image, patch, dim, heads)
    (8, 2, 16, 2),
    (8, 2, 32, 4),
    (8, 4, 24, 3),
    (8, 2, 12, 1),
    (8, 4, 32, 2),
    (4, 2, 8, 2),
]


def random_sdt_config(i: int, seed: int = 0) -> dict:
    """The i-th random sdt configuration of the check (depth 0–3, T 1–6, both attentions)."""
    rng = np.random.default_rng([seed, i, 1])  # a stream apart from the ViT check's configurations
    image, patch, dim, heads = _DIMS[int(rng.integers(len(_DIMS)))]
    return dict(
        seed=int(rng.integers(2**31)),
        image=image,
        patch=patch,
        dim=dim,
        heads=heads,
        depth=int(rng.integers(0, 4)),
        mlp_dim=dim * int(rng.integers(1, 3)),
        classes=int(rng.integers(2, 11)),
        attention=("sdsa3", "sdsa1")[int(rng.integers(2))],
        timesteps=int(rng.integers(1, 7)),
    )


def _summary(results: list[SDTCaseResult]) -> dict:
    """Totals; ``ok`` only if something was compared, nothing differed and every width held."""
    elements = sum(r.elements for r in results)
    mismatches = sum(r.mismatches for r in results)
    violations = sum(r.width_violations for r in results)
    return {
        "ok": elements > 0 and mismatches == 0 and violations == 0,
        "arch": "sdt",
        "cases": len(results),
        "images": sum(r.images for r in results),
        "elements_compared": elements,
        "mismatches": mismatches,
        "width_violations": violations,
        "quantities_checked": sum(r.quantities_checked for r in results),
        "first_mismatch": next((r.first_mismatch for r in results if r.first_mismatch), None),
        "steps": {
            "min": min((r.steps for r in results), default=None),
            "max": max((r.steps for r in results), default=None),
        },
    }


def _random_case(i: int, seed: int, batch: int) -> tuple[SDTCaseResult, dict]:
    """Case i: its model and images follow from (seed, i) alone (any process, any order)."""
    cfg = random_sdt_config(i, seed)
    art = random_sdt(**cfg)
    images = random_images(cfg["seed"] + 7, art, batch)
    return compare_sdt(f"random[{i}]", art, images), cfg


def check_sdt_random(
    cases: int,
    batch: int = 8,
    seed: int = 0,
    progress: Callable[[int, SDTCaseResult, dict], None] | None = None,
    threads: int = 1,
) -> dict:
    """``cases`` random sdt models, ``batch`` random images each; the summary does not depend on
    ``threads`` (nor does the order of the ``progress`` calls)."""
    _positive("cases", cases)
    _positive("batch", batch)
    check_threads(threads)

    def done(i: int, rc: tuple[SDTCaseResult, dict]) -> None:
        if progress is not None:
            progress(i, *rc)

    pairs = ordered_map(_random_case, [(i, seed, batch) for i in range(cases)], threads, done)
    return _summary([r for r, _ in pairs])


def check_sdt_artifact(art: SDTArtifact, images: np.ndarray, batch: int = 64, threads: int = 1) -> dict:
    """The same comparison on one artifact, ``images`` in batches (shared by ``threads`` workers)."""
    _positive("batch", batch)
    check_threads(threads)
    if len(images) == 0:
        raise ValueError("images: need at least one image to compare")
    tasks = [(f"batch[{i // batch}]", art, images[i : i + batch]) for i in range(0, len(images), batch)]
    return _summary(ordered_map(compare_sdt, tasks, threads))
