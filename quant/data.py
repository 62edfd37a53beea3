"""The digits data set (scikit-learn ``load_digits``, bundled: no download) and its fixed split.

Images are 8×8, one channel, integer pixels 0..16. They are used as integer image codes directly
(``input_min = 0``, ``input_max = 16``, ``input_unit = 1/16``: the real pixel value is code/16).
The split is stratified by class: ``sklearn.model_selection.train_test_split(test_size=0.2,
stratify=y, random_state=split_seed)`` with ``split_seed = 0`` by default (1437 train, 360 test).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["DigitsSplit", "load_split", "augment_shift"]


@dataclass(frozen=True)
class DigitsSplit:
    x_train: np.ndarray  # (n, 8, 8) int64 codes 0..16
    y_train: np.ndarray  # (n,) int64
    x_test: np.ndarray
    y_test: np.ndarray
    split_seed: int
    test_fraction: float

    def describe(self) -> str:
        return (f"digits: {len(self.y_train)} train / {len(self.y_test)} test, stratified, "
                f"test_fraction={self.test_fraction}, split_seed={self.split_seed}")


def load_split(split_seed: int = 0, test_fraction: float = 0.2) -> DigitsSplit:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = np.rint(d.images).astype(np.int64)
    if x.min() < 0 or x.max() > 16:  # pragma: no cover - property of the bundled data
        raise ValueError("digits pixels outside 0..16")
    y = d.target.astype(np.int64)
    xtr, xte, ytr, yte = train_test_split(
        x, y, test_size=test_fraction, stratify=y, random_state=split_seed
    )
    return DigitsSplit(xtr, ytr, xte, yte, split_seed, test_fraction)


def augment_shift(x: torch.Tensor, gen: torch.Generator, max_shift: int = 1) -> torch.Tensor:
    """Random translation by up to ``max_shift`` pixels in each direction, zero fill.

    Codes stay integers in the input range, so augmented images are valid integer inputs too.
    """
    if max_shift <= 0:
        return x
    B, H, W = x.shape
    p = max_shift
    padded = torch.nn.functional.pad(x, (p, p, p, p))
    dy = torch.randint(0, 2 * p + 1, (B,), generator=gen)
    dx = torch.randint(0, 2 * p + 1, (B,), generator=gen)
    rows = (dy[:, None] + torch.arange(H)[None, :])  # (B, H)
    cols = (dx[:, None] + torch.arange(W)[None, :])  # (B, W)
    b = torch.arange(B)[:, None, None]
    return padded[b, rows[:, :, None], cols[:, None, :]]
