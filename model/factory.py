"""Random integer ViT models and inputs, for tests, benchmarks and the equivalence check.

Weights are random int8; thresholds, the softmax constant and LayerNorm parameters are calibrated on
random images the way LSQ initializes its steps (``s = 2·mean|x|/√Qp``), so every site is exercised.
"""

from __future__ import annotations

import math

import numpy as np

from .artifact import RESIDUAL_SITES, Site, ViTArtifact, ViTDims, site_names
from .intops import SoftmaxParams, layernorm_eps_term, softmax_constant
from .neurons import check_levels
from .vit import qann_forward

__all__ = ["random_vit", "random_images", "reference_model"]

_SIGNED_FALSE = ("attn", "fc1")


def random_images(seed: int, art: ViTArtifact, batch: int) -> np.ndarray:
    """Random integer images ``(batch, C, H, W)`` in the artifact's input range (smooth blobs + noise)."""
    rng = np.random.default_rng(seed)
    d = art.dims
    lo, hi = art.input_min, art.input_max
    yy, xx = np.mgrid[0 : d.image, 0 : d.image]
    img = np.zeros((batch, d.channels, d.image, d.image))
    for _ in range(3):
        cy, cx = rng.uniform(0, d.image, (2, batch, d.channels, 1, 1))
        r = rng.uniform(1.0, d.image / 2, (batch, d.channels, 1, 1))
        img += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
    img = img / img.max(axis=(2, 3), keepdims=True) + rng.normal(0, 0.1, img.shape)
    return np.clip(np.rint(lo + img * (hi - lo)), lo, hi).astype(np.int64)


def random_vit(
    seed: int,
    *,
    image: int = 8,
    channels: int = 1,
    patch: int = 2,
    dim: int = 32,
    heads: int = 2,
    depth: int = 1,
    mlp_ratio: int = 2,
    levels: int = 16,
    classes: int = 10,
    input_max: int = 16,
    worst_case: bool = False,
    calibration_images: int = 16,
) -> ViTArtifact:
    """A random integer ViT with calibrated thresholds.

    ``worst_case=True`` uses maximum-magnitude weights (±127, one sign per output row) and biases so
    that the width analysis can be checked against the largest values a run can produce.
    """
    levels = check_levels(levels)
    dims = ViTDims(
        image=image,
        channels=channels,
        patch=patch,
        dim=dim,
        heads=heads,
        depth=depth,
        mlp_dim=dim * mlp_ratio,
        classes=classes,
    )
    rng = np.random.default_rng(seed)
    D, F = dims.dim, dims.mlp_dim
    R = 8

    def w(shape: tuple[int, int]) -> np.ndarray:
        if worst_case:
            sign = rng.choice([-1, 1], size=(shape[0], 1))
            return np.broadcast_to(127 * sign, shape).astype(np.int8)
        return np.clip(np.rint(rng.normal(0, 48, shape)), -127, 127).astype(np.int8)

    def b(n: int, scale: int) -> np.ndarray:
        return rng.integers(-scale, scale + 1, n).astype(np.int64)

    K, P = 16, 10
    T: dict[str, np.ndarray] = {
        "patch_embed.weight": w((D, dims.patch_dim)),
        "patch_embed.bias": b(D, 200),
        "cls": b(D, 1 << (R - 1)),
        "pos": b(dims.tokens * D, 1 << (R - 2)).reshape(dims.tokens, D),
        "norm.gamma": (1 << K) + b(D, 1 << (K - 3)),
        "norm.beta": b(D, 1 << (P - 3)),
        "head.weight": w((classes, D)),
        "head.bias": b(classes, 50),
    }
    for i in range(depth):
        p = f"blocks.{i}."
        T |= {
            p + "ln1.gamma": (1 << K) + b(D, 1 << (K - 3)),
            p + "ln1.beta": b(D, 1 << (P - 3)),
            p + "qkv.weight": w((3 * D, D)),
            p + "qkv.bias": b(3 * D, 100),
            p + "proj.weight": w((D, D)),
            p + "proj.bias": b(D, 100),
            p + "ln2.gamma": (1 << K) + b(D, 1 << (K - 3)),
            p + "ln2.beta": b(D, 1 << (P - 3)),
            p + "fc1.weight": w((F, D)),
            p + "fc1.bias": b(F, 100),
            p + "fc2.weight": w((D, F)),
            p + "fc2.bias": b(D, 100),
        }
    sites = {}
    for n in site_names(dims):
        short = n.rsplit(".", 1)[-1]
        M = int(rng.integers(8, 400)) if short in RESIDUAL_SITES else None
        sites[n] = Site(n, levels, short not in _SIGNED_FALSE, np.ones(1, dtype=np.int64), M)
    eps = {
        n: layernorm_eps_term(1e-5, D, 2.0**-R)
        for n in [f"blocks.{i}.ln{j}" for i in range(depth) for j in (1, 2)] + ["norm"]
    }
    art = ViTArtifact(
        dims=dims,
        sites=sites,
        tensors=T,
        softmax=[SoftmaxParams(C=1) for _ in range(depth)],
        ln_eps=eps,
        ln_K=K,
        ln_P=P,
        residual_R=R,
        input_min=0,
        input_max=input_max,
        input_unit=1.0 / input_max,
        meta={"source": "random_vit", "seed": seed, "worst_case": worst_case},
    )

    def calibrate(name: str, a: np.ndarray) -> None:
        if name.endswith(".scores"):
            i = int(name.split(".")[1])
            spread = float(np.std(a)) or 1.0
            art.softmax[i] = SoftmaxParams(C=max(1, softmax_constant(2.0 / spread)))
            return
        s = art.sites[name]
        short = name.rsplit(".", 1)[-1]
        per_channel = short in ("patch_embed", "q", "k", "v", "proj", "fc1", "fc2")
        axes = tuple(range(a.ndim - 1)) if per_channel else None
        mean_abs = np.mean(np.abs(a.astype(np.float64)), axis=axes)
        theta = np.maximum(1, np.rint(2 * mean_abs / math.sqrt(s.qp))).astype(np.int64)
        art.sites[name] = Site(name, s.levels, s.signed, np.atleast_1d(theta), s.M)

    cal = random_images(seed + 1, art, calibration_images)
    if worst_case:
        cal[:] = art.input_max
    qann_forward(art, cal, calibrate=calibrate)
    return art.validate()


def reference_model(seed: int = 0) -> ViTArtifact:
    """The stated reference model of the benchmarks: 8×8 input, patch 2 (17 tokens), dim 64, 4 heads,
    depth 2, MLP 128, 16 levels."""
    return random_vit(seed, image=8, patch=2, dim=64, heads=4, depth=2, mlp_ratio=2, levels=16)
