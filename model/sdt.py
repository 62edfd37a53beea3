"""The spike-driven transformer (Meta-SpikeFormer family, SPEC §8): artifact, golden model, energy.

Integer semantics, per image, for ``t = 0 … T−1`` (``T`` time steps, binary spikes):

* stem (analog, computed once): ``acc = patches · W_stemᵀ`` (int8 weights, MACs), then
  ``U0 = ((acc · m) >> S) + B_stem`` with a per-channel integer multiplier ``m`` and a per-token,
  per-channel bias ``B_stem`` (BatchNorm bias plus position embedding). ``U0`` enters every step.
* the residual stream ``U`` (membrane shortcut) is an integer per channel; its unit is shared by
  every writer of the channel (the stem, every ``proj`` and ``fc2``), so branch outputs add to it
  without rescaling. At every step ``U = U0``, then each block
  ``s = LIF(U); q, k, v = LIF(s·W_qkvᵀ + b); U += SDSA(q, k, v)·W_projᵀ + b``;
  ``s = LIF(U); h = LIF(s·W_fc1ᵀ + b); U += h·W_fc2ᵀ + b``.
* head: ``s = LIF(U)``; the per-channel spike count over tokens (the token mean without its
  constant ``1/N``) feeds an int8 linear; ``logits = Σ_t (count·W_headᵀ + N·b_head)``.

Every LIF is :class:`~equispike.model.neurons.LIFArray` (τ = 2, hard reset, per-channel integer θ),
SDSA-3 is :class:`~equispike.model.sdsa.SDSA3`, SDSA-1 is :func:`~equispike.model.sdsa.sdsa1`, every
linear on spikes is :class:`~equispike.model.linear.AWLinear`: one definition of each rule. Biases
enter at every step (they are the BatchNorm shift of each step's pre-activation, not a one-off
charge as in the ST-BIF network of SPEC §3).

The artifact is the same ``.esa`` zip as the ViT's, ``arch: "sdt"``, schema version 2.
"""

from __future__ import annotations

import io
import json
import math
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .artifact import (
    _ZIP_DATE,
    FORMAT,
    MAX_DEPTH,
    MAX_DIM,
    MAX_INPUT_MAGNITUDE,
    MAX_TENSOR_MAGNITUDE,
    ArtifactError,
    DerivedDims,
    _field,
    _is_int,
    _no_unknown,
    _read_npy,
    _read_zip,
    _short,
    atomic_write_bytes,
)
from .energy import energy_pj, spike_acs
from .linear import AWLinear, aw_acs
from .neurons import LIFArray
from .sdsa import SDSA3, sdsa1
from .vit import patchify
from .widths import WidthReport

__all__ = [
    "SDT_SCHEMA_VERSION",
    "ATTENTIONS",
    "MAX_TIMESTEPS",
    "SDTDims",
    "SDTArtifact",
    "sdt_expected_tensors",
    "save_sdt_artifact",
    "load_sdt_artifact",
    "SDTRun",
    "RangeCheck",
    "stem_membrane",
    "run_sdt",
    "sdt_dense_macs",
    "random_sdt",
    "worst_case_sdt",
    "worst_case_sdt_images",
]

SDT_SCHEMA_VERSION = 2
ATTENTIONS = ("sdsa3", "sdsa1")
MAX_TIMESTEPS = 1024
MAX_SHIFT = 48
_MANIFEST_KEYS = {
    "format",
    "schema_version",
    "arch",
    "dims",
    "attention",
    "timesteps",
    "input",
    "stem",
    "tensors",
    "widths",
    "meta",
}


@dataclass(frozen=True)
class SDTDims(DerivedDims):
    """Dimensions of the spike-driven transformer; tokens are the patches (no class token)."""

    image: int = 8
    channels: int = 1
    patch: int = 2
    dim: int = 32
    heads: int = 2
    depth: int = 1
    mlp_dim: int = 64
    classes: int = 10

    def __post_init__(self) -> None:
        for name in ("image", "channels", "patch", "dim", "heads", "mlp_dim", "classes"):
            v = getattr(self, name)
            if not _is_int(v) or not 1 <= v <= MAX_DIM:
                raise ArtifactError(f"dims.{name} must be an integer in [1, {MAX_DIM}], got {v!r}")
        if not _is_int(self.depth) or not 0 <= self.depth <= MAX_DEPTH:
            raise ArtifactError(f"dims.depth must be an integer in [0, {MAX_DEPTH}], got {self.depth!r}")
        if self.image % self.patch:
            raise ArtifactError(f"dims.patch ({self.patch}) must divide dims.image ({self.image})")
        if self.dim % self.heads:
            raise ArtifactError(f"dims.heads ({self.heads}) must divide dims.dim ({self.dim})")

    @property
    def tokens(self) -> int:
        return self.patches


def sdt_expected_tensors(dims: SDTDims) -> dict[str, tuple[tuple[int, ...], str]]:
    """Name → (shape, kind); kind is ``weight`` (int8 range), ``theta`` (>= 1) or ``int``."""
    D, F, N = dims.dim, dims.mlp_dim, dims.tokens
    t: dict[str, tuple[tuple[int, ...], str]] = {
        "stem.weight": ((D, dims.patch_dim), "weight"),
        "stem.multiplier": ((D,), "int"),
        "stem.bias": ((N, D), "int"),
        "head.theta": ((D,), "theta"),
        "head.weight": ((dims.classes, D), "weight"),
        "head.bias": ((dims.classes,), "int"),
    }
    for i in range(dims.depth):
        p = f"blocks.{i}."
        t |= {
            p + "lif1.theta": ((D,), "theta"),
            p + "qkv.weight": ((3 * D, D), "weight"),
            p + "qkv.bias": ((3 * D,), "int"),
            p + "qkv.theta": ((3 * D,), "theta"),
            p + "proj.weight": ((D, D), "weight"),
            p + "proj.bias": ((D,), "int"),
            p + "lif2.theta": ((D,), "theta"),
            p + "fc1.weight": ((F, D), "weight"),
            p + "fc1.bias": ((F,), "int"),
            p + "fc1.theta": ((F,), "theta"),
            p + "fc2.weight": ((D, F), "weight"),
            p + "fc2.bias": ((D,), "int"),
        }
    return t


@dataclass
class SDTArtifact:
    """An exported integer spike-driven transformer. Build it, then :meth:`validate`.

    Parameters
    ----------
    dims:
        Model dimensions.
    tensors:
        Integer tensors named as :func:`sdt_expected_tensors` lists them.
    attention:
        ``"sdsa3"`` (``Q·(KᵀV)`` into the attention LIF) or ``"sdsa1"`` (``Q AND OR(K AND V)``).
    timesteps:
        Default number of time steps ``T`` of a run.
    stem_shift:
        ``S`` of the stem requantization ``(acc · m) >> S``.
    """

    dims: SDTDims
    tensors: dict[str, np.ndarray]
    attention: str = "sdsa3"
    timesteps: int = 4
    stem_shift: int = 16
    input_min: int = 0
    input_max: int = 16
    input_unit: float = 1.0
    widths: dict[str, int] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def validate(self, check_widths: bool = True) -> SDTArtifact:
        """Check every field; raise :class:`ArtifactError` naming the first bad one."""
        if not isinstance(self.dims, SDTDims):
            raise ArtifactError(f"dims: expected SDTDims, got {type(self.dims).__name__}")
        if self.attention not in ATTENTIONS:
            raise ArtifactError(
                f"attention: expected one of {list(ATTENTIONS)}, got {_short(self.attention)}"
            )
        if not _is_int(self.timesteps) or not 1 <= self.timesteps <= MAX_TIMESTEPS:
            raise ArtifactError(
                f"timesteps must be an integer in [1, {MAX_TIMESTEPS}], got {_short(self.timesteps)}"
            )
        if not _is_int(self.stem_shift) or not 0 <= self.stem_shift <= MAX_SHIFT:
            raise ArtifactError(
                f"stem.shift must be an integer in [0, {MAX_SHIFT}], got {_short(self.stem_shift)}"
            )
        want = sdt_expected_tensors(self.dims)
        missing = sorted(set(want) - set(self.tensors))
        extra = sorted(set(self.tensors) - set(want))
        if missing:
            raise ArtifactError(f"tensors: missing {missing[:5]}")
        if extra:
            raise ArtifactError(f"tensors: unexpected {extra[:5]}")
        for name, (shape, kind) in want.items():
            a = self.tensors[name]
            if not isinstance(a, np.ndarray) or a.dtype.kind not in "iu":
                got = getattr(a, "dtype", type(a).__name__)
                raise ArtifactError(f"tensors.{name}: values must be integers, got {got}")
            if a.shape != shape:
                raise ArtifactError(f"tensors.{name}: shape {a.shape} does not match dims, expected {shape}")
            if not a.size:
                continue
            lo, hi = int(a.min()), int(a.max())
            if max(-lo, hi) >= MAX_TENSOR_MAGNITUDE:
                raise ArtifactError(f"tensors.{name}: magnitude {max(-lo, hi)} too large")
            if kind == "weight" and (lo < -128 or hi > 127):
                raise ArtifactError(f"tensors.{name}: int8 weights must lie in [-128, 127], got [{lo}, {hi}]")
            if kind == "theta" and lo < 1:
                raise ArtifactError(f"tensors.{name}: LIF thresholds must be >= 1, got min {lo}")
        if int(self.tensors["stem.multiplier"].min(initial=0)) < 0:
            raise ArtifactError("tensors.stem.multiplier: must be >= 0")
        for key in ("min", "max"):
            v = getattr(self, f"input_{key}")
            if not _is_int(v) or abs(v) > MAX_INPUT_MAGNITUDE:
                raise ArtifactError(
                    f"input.{key} must be an integer in [-{MAX_INPUT_MAGNITUDE}, "
                    f"{MAX_INPUT_MAGNITUDE}], got {_short(v)}"
                )
        if self.input_min > self.input_max:
            raise ArtifactError(f"input: need min <= max, got [{self.input_min}, {self.input_max}]")
        u = self.input_unit
        if not isinstance(u, int | float) or isinstance(u, bool) or not math.isfinite(u) or u <= 0:
            raise ArtifactError(f"input.unit must be a finite number > 0, got {_short(u)}")
        if not isinstance(self.widths, dict) or not all(
            isinstance(k, str) and _is_int(v) for k, v in self.widths.items()
        ):
            raise ArtifactError(
                f"widths: expected an object of integer bit widths, got {_short(self.widths)}"
            )
        if not isinstance(self.meta, dict):
            raise ArtifactError(f"meta: expected an object, got {type(self.meta).__name__}")
        if check_widths:
            from .sdt_widths import analyze_sdt

            report = analyze_sdt(self)  # raises ArtifactError when a bound exceeds 64 bits
            for key, bits in self.widths.items():
                if key not in report.bits:
                    raise ArtifactError(f"widths.{key}: unknown quantity")
                if bits < report.bits[key]:
                    raise ArtifactError(
                        f"widths.{key}: declared {bits} bits cannot hold the worst case "
                        f"[{report.lo[key]}, {report.hi[key]}], which needs {report.bits[key]}"
                    )
        return self

    def manifest(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "schema_version": SDT_SCHEMA_VERSION,
            "arch": "sdt",
            "dims": {k: getattr(self.dims, k) for k in SDTDims.__dataclass_fields__},
            "attention": self.attention,
            "timesteps": self.timesteps,
            "input": {"min": self.input_min, "max": self.input_max, "unit": self.input_unit},
            "stem": {"shift": self.stem_shift},
            "tensors": sorted(self.tensors),
            "widths": dict(sorted(self.widths.items())),
            "meta": self.meta,
        }


def save_sdt_artifact(art: SDTArtifact, path: str | os.PathLike) -> Path:
    """Validate and write ``art`` atomically; the same artifact always gives the same bytes."""
    art.validate()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        info = zipfile.ZipInfo("manifest.json", date_time=_ZIP_DATE)
        info.compress_type = zipfile.ZIP_DEFLATED
        zf.writestr(info, json.dumps(art.manifest(), indent=1, sort_keys=True))
        for name in sorted(art.tensors):
            nb = io.BytesIO()
            np.lib.format.write_array(nb, np.ascontiguousarray(art.tensors[name]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, nb.getvalue())
    return atomic_write_bytes(path, buf.getvalue())


def load_sdt_artifact(path: str | os.PathLike) -> SDTArtifact:
    """Read and validate an ``arch: "sdt"`` artifact; :class:`ArtifactError` names any bad field."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: no such artifact file")
    raw_manifest, raw = _read_zip(path)
    try:
        m = json.loads(raw_manifest)
    except (ValueError, RecursionError) as exc:
        raise ArtifactError(f"manifest.json: invalid JSON ({exc})") from None
    if not isinstance(m, dict):
        raise ArtifactError(f"manifest.json: expected a JSON object, got {type(m).__name__}")
    if m.get("format") != FORMAT:
        raise ArtifactError(f"format: expected {FORMAT!r}, got {_short(m.get('format'))}")
    if m.get("arch") != "sdt":
        raise ArtifactError(f"arch: expected 'sdt', got {_short(m.get('arch'))}")
    sv = m.get("schema_version")
    if not _is_int(sv) or sv != SDT_SCHEMA_VERSION:
        raise ArtifactError(
            f"schema_version: sdt artifacts are version {SDT_SCHEMA_VERSION}, got {_short(sv)}"
        )
    _no_unknown(m, _MANIFEST_KEYS, "manifest")
    dm = _field(m, "dims", "manifest", dict)
    _no_unknown(dm, SDTDims.__dataclass_fields__, "dims")
    dims = SDTDims(**{k: _field(dm, k, "dims", int) for k in SDTDims.__dataclass_fields__})
    attention = _field(m, "attention", "manifest", str)
    timesteps = _field(m, "timesteps", "manifest", int)
    inp = _field(m, "input", "manifest", dict)
    _no_unknown(inp, ("min", "max", "unit"), "input")
    stem = _field(m, "stem", "manifest", dict)
    _no_unknown(stem, ("shift",), "stem")
    listed = _field(m, "tensors", "manifest", list)
    for i, n in enumerate(listed):
        if not isinstance(n, str):
            raise ArtifactError(f"tensors[{i}]: expected a tensor name, got {_short(n)}")
    if len(set(listed)) != len(listed):
        raise ArtifactError("tensors: the manifest lists a tensor twice")
    if sorted(listed) != sorted(raw):
        diff = sorted(set(listed) ^ set(raw))
        raise ArtifactError(f"tensors: manifest list and stored tensors differ on {diff[:5]}")
    want = sdt_expected_tensors(dims)
    missing = sorted(set(want) - set(raw))
    extra = sorted(set(raw) - set(want))
    if missing:
        raise ArtifactError(f"tensors: missing {missing[:5]}")
    if extra:
        raise ArtifactError(f"tensors: unexpected {extra[:5]}")
    widths = m.get("widths", {})
    if not isinstance(widths, dict):
        raise ArtifactError(f"widths: expected an object, got {type(widths).__name__}")
    widths = {k: _field(widths, k, "widths", int) for k in widths}
    meta = m.get("meta", {})
    if not isinstance(meta, dict):
        raise ArtifactError(f"meta: expected an object, got {type(meta).__name__}")
    art = SDTArtifact(
        dims=dims,
        tensors={k: _read_npy(k, raw[k]) for k in sorted(raw)},
        attention=attention,
        timesteps=timesteps,
        stem_shift=_field(stem, "shift", "stem", int),
        input_min=_field(inp, "min", "input", int),
        input_max=_field(inp, "max", "input", int),
        input_unit=_field(inp, "unit", "input", (int, float)),
        widths=widths,
        meta=meta,
    )
    art.validate()
    for k, (_, kind) in want.items():
        if kind == "weight":
            art.tensors[k] = art.tensors[k].astype(np.int8)
    return art


# ------------------------------------------------------------------------------------------------
# golden model
# ------------------------------------------------------------------------------------------------
@dataclass
class SDTRun:
    """Result of :func:`run_sdt`: logits summed over steps, and the SPEC §10 counts per image.

    ``step_logits[t]`` holds the logits summed over steps ``0 … t`` (so accuracy at fewer steps is
    read off one run).
    """

    logits: np.ndarray  # (B, classes) int64
    step_logits: np.ndarray  # (T, B, classes) int64
    macs: np.ndarray  # (B,) int64
    acs: np.ndarray  # (B,) int64
    spikes: dict[str, np.ndarray]  # site -> (B,) total spikes over the run
    # with ``record=True``: site -> {"spikes": (T, B, *site shape) int8}, every LIF site of every step
    # (``q``, ``k``, ``v`` apart; SDSA-1 also its ``kv``, the co-active pairs ``k AND v``)
    records: dict[str, dict[str, np.ndarray]] | None = None
    # with ``probe=True``: width key -> (smallest, largest) value the run produced (model/sdt_widths.py)
    extremes: dict[str, tuple[int, int]] | None = None

    @property
    def energy_pj(self) -> np.ndarray:
        return energy_pj(self.macs, self.acs)


class RangeCheck:
    """The narrowing check of the golden model: every intermediate that the width analysis bounds
    (:func:`~equispike.model.sdt_widths.analyze_sdt`, the widths the core is built with) is compared
    with its proven range when it is produced; a value outside raises ``OverflowError`` naming the
    quantity, the value and its index, so a wrong bound cannot pass silently.

    ``probe=True`` also keeps the extremes seen per quantity (:attr:`extremes`), for the tests that
    drive each bound.
    """

    def __init__(self, report: WidthReport, probe: bool = False):
        self.lo, self.hi = report.lo, report.hi
        self.extremes: dict[str, tuple[int, int]] | None = {} if probe else None

    def __call__(self, key: str, a: np.ndarray) -> None:
        if not a.size:
            return
        lo, hi = int(a.min()), int(a.max())
        b_lo, b_hi = self.lo[key], self.hi[key]
        if lo < b_lo or hi > b_hi:
            bad = np.unravel_index(int(np.argmax((a < b_lo) | (a > b_hi))), a.shape)
            raise OverflowError(
                f"{key}: value {int(a[bad])} at index {tuple(int(i) for i in bad)} lies outside its "
                f"proven range [{b_lo}, {b_hi}] (model/sdt_widths.py)"
            )
        if self.extremes is not None:
            old = self.extremes.get(key, (lo, hi))
            self.extremes[key] = (min(old[0], lo), max(old[1], hi))


def stem_membrane(
    art: SDTArtifact, images: np.ndarray, check: Callable[[str, np.ndarray], None] | None = None
) -> np.ndarray:
    """``U0 = ((patches · W_stemᵀ · m) >> S) + B_stem``, int64 ``(B, N, D)``: the analog first layer.

    ``check(key, values)``, when given, sees ``stem.acc``, ``stem.product`` and ``stem.out``.
    """
    T = art.tensors
    x = patchify(art, images)
    acc = x @ T["stem.weight"].astype(np.int64).T
    prod = acc * T["stem.multiplier"].astype(np.int64)
    u0 = (prod >> art.stem_shift) + T["stem.bias"]
    if check is not None:
        check("stem.acc", acc)
        check("stem.product", prod)
        check("stem.out", u0)
    return u0


def run_sdt(
    art: SDTArtifact,
    images: np.ndarray,
    timesteps: int | None = None,
    record: bool = False,
    probe: bool = False,
    bounds: WidthReport | None = None,
) -> SDTRun:
    """Run the integer spike-driven transformer on integer images for ``timesteps`` steps.

    Parameters
    ----------
    art:
        A validated artifact.
    images:
        ``(B, H, W)`` or ``(B, C, H, W)`` integer codes within the artifact's input range.
    timesteps:
        ``T``; the artifact's ``timesteps`` when None.
    record:
        Also keep every site's spikes of every step (:attr:`SDTRun.records`), for the core's
        spike-by-spike comparison.
    probe:
        Also keep the extremes of every bounded intermediate (:attr:`SDTRun.extremes`).
    bounds:
        The ranges checked at every narrowing point (:class:`RangeCheck`); the artifact's own
        analysis (:func:`~equispike.model.sdt_widths.analyze_sdt`) when None.

    Returns
    -------
    SDTRun
        Logits, per-step cumulative logits, MACs, ACs and spike totals per image.

    Raises
    ------
    OverflowError
        An intermediate left its proven range (names the quantity, the value and its index).
    """
    for name, flag in (("record", record), ("probe", probe)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be a bool, got {type(flag).__name__}")
    steps = art.timesteps if timesteps is None else timesteps
    if not _is_int(steps) or not 1 <= steps <= MAX_TIMESTEPS:
        raise ValueError(f"timesteps must be an integer in [1, {MAX_TIMESTEPS}], got {steps!r}")
    d, Tn = art.dims, art.tensors
    if bounds is None:
        from .sdt_widths import analyze_sdt  # (sdt_widths imports this module)

        bounds = analyze_sdt(art)
    check = RangeCheck(bounds, probe)
    u0 = stem_membrane(art, images, check)
    B, N, D = u0.shape
    F, H, C = d.mlp_dim, d.heads, d.classes
    macs = np.full(B, N * D * d.patch_dim + N * D, dtype=np.int64)  # products, then the requantization
    acs = np.zeros(B, dtype=np.int64)
    spikes: dict[str, np.ndarray] = {}
    blocks = []
    for i in range(d.depth):
        p = f"blocks.{i}."
        blocks.append(
            {
                "lif1": LIFArray((B, N, D), Tn[p + "lif1.theta"]),
                "qkv": AWLinear(Tn[p + "qkv.weight"], Tn[p + "qkv.bias"]),
                "lif_qkv": LIFArray((B, N, 3 * D), Tn[p + "qkv.theta"]),
                "sdsa": SDSA3((B, N, D), H) if art.attention == "sdsa3" else None,
                "proj": AWLinear(Tn[p + "proj.weight"], Tn[p + "proj.bias"]),
                "lif2": LIFArray((B, N, D), Tn[p + "lif2.theta"]),
                "fc1": AWLinear(Tn[p + "fc1.weight"], Tn[p + "fc1.bias"]),
                "lif_fc1": LIFArray((B, N, F), Tn[p + "fc1.theta"]),
                "fc2": AWLinear(Tn[p + "fc2.weight"], Tn[p + "fc2.bias"]),
            }
        )
    head_lif = LIFArray((B, N, D), Tn["head.theta"])
    head = AWLinear(Tn["head.weight"], None, spike_max=N)
    head_bias = N * Tn["head.bias"].astype(np.int64)

    rec: dict[str, list[np.ndarray]] = {}

    def lif(name: str, n: LIFArray, x: np.ndarray) -> np.ndarray:
        # the LIF's two bounded quantities: its input current and V + x, the widest sum it forms
        check(name + ".current", x)
        check(name + ".membrane", n.V + x)
        return n.step(x)

    def count(name: str, s: np.ndarray) -> None:
        spikes[name] = spikes.get(name, 0) + np.count_nonzero(s.reshape(B, -1), axis=1)
        if record:
            rec.setdefault(name, []).append(s.astype(np.int8))

    logits = np.zeros((B, C), dtype=np.int64)
    step_logits = np.zeros((steps, B, C), dtype=np.int64)
    dh = D // H
    for t in range(steps):
        u = u0.copy()  # the stem's result, re-injected every step
        for i, blk in enumerate(blocks):
            p = f"blocks.{i}."
            s = lif(p + "lif1", blk["lif1"], u)
            count(p + "lif1", s)
            acs += aw_acs(s, 3 * D)
            qkv = lif(p + "qkv", blk["lif_qkv"], blk["qkv"](s).astype(np.int64))
            count(p + "qkv", qkv)
            q, k, v = qkv[..., :D], qkv[..., D : 2 * D], qkv[..., 2 * D :]
            if record:
                for name, x in (("q", q), ("k", k), ("v", v)):
                    rec.setdefault(p + name, []).append(x.astype(np.int8))
            if blk["sdsa"] is not None:
                a = blk["sdsa"].step(q, k, v, lambda key, x, p=p: check(p + "attn." + key, x))
                # event driven: each k spike adds a v row into M, each q spike adds an M row into Q·M
                acs += spike_acs(np.count_nonzero(k.reshape(B, -1), axis=1), dh)
                acs += spike_acs(np.count_nonzero(q.reshape(B, -1), axis=1), dh)
            else:
                a = sdsa1(q, k, v)
                if record:
                    rec.setdefault(p + "kv", []).append((k & v).astype(np.int8))
                # the token sum of K AND V: one addition per co-active pair
                acs += np.count_nonzero((k & v).reshape(B, -1), axis=1)
            count(p + "attn", a)
            acs += aw_acs(a, D)
            u = u + blk["proj"](a).astype(np.int64)
            s = lif(p + "lif2", blk["lif2"], u)
            count(p + "lif2", s)
            acs += aw_acs(s, F)
            h = lif(p + "fc1", blk["lif_fc1"], blk["fc1"](s).astype(np.int64))
            count(p + "fc1", h)
            acs += aw_acs(h, D)
            u = u + blk["fc2"](h).astype(np.int64)
            check(p + "residual", u)
        s = lif("head", head_lif, u)
        count("head", s)
        acs += aw_acs(s, C)
        n_fired = s.sum(axis=1, dtype=np.int64)
        check("head.count", n_fired)
        step_out = head(n_fired).astype(np.int64) + head_bias
        check("head.step", step_out)
        logits += step_out
        check("logits", logits)
        step_logits[t] = logits
    records = None
    if record:
        records = {name: {"spikes": np.stack(v)} for name, v in rec.items() if not name.endswith(".qkv")}
    return SDTRun(
        logits=logits,
        step_logits=step_logits,
        macs=macs,
        acs=acs,
        spikes=spikes,
        records=records,
        extremes=check.extremes,
    )


def sdt_dense_macs(dims: SDTDims, timesteps: int, attention: str = "sdsa3") -> int:
    """MACs of the same network run densely (every product a MAC) for ``timesteps`` steps, for scale.

    Attention: SDSA-3 ``KᵀV`` and ``Q·M`` (``2·N·D·d_head``), SDSA-1 the two element-wise products
    ``K ⊗ V`` and ``Q ⊗ ·`` (``2·N·D``).
    """
    N, D, F, C = dims.tokens, dims.dim, dims.mlp_dim, dims.classes
    attn = 2 * N * D * (D // dims.heads) if attention == "sdsa3" else 2 * N * D
    per_step = dims.depth * (N * D * 3 * D + attn + N * D * D + 2 * N * D * F)
    per_step += N * D * C
    return N * D * dims.patch_dim + N * D + timesteps * per_step


# ------------------------------------------------------------------------------------------------
# random models (tests, fuzzing)
# ------------------------------------------------------------------------------------------------
def random_sdt(
    seed: int,
    *,
    image: int = 8,
    patch: int = 2,
    dim: int = 16,
    heads: int = 2,
    depth: int = 1,
    mlp_dim: int = 32,
    classes: int = 10,
    attention: str = "sdsa3",
    timesteps: int = 4,
) -> SDTArtifact:
    """A random valid artifact whose neurons fire at a moderate rate (thresholds from weight scales).

    The same arguments give the same artifact.
    """
    rng = np.random.default_rng(seed)
    dims = SDTDims(
        image=image, patch=patch, dim=dim, heads=heads, depth=depth, mlp_dim=mlp_dim, classes=classes
    )
    want = sdt_expected_tensors(dims)
    t: dict[str, np.ndarray] = {}
    for name, (shape, kind) in want.items():
        if kind == "weight":
            t[name] = rng.integers(-128, 128, size=shape).astype(np.int8)
        elif kind == "theta":
            # a spike adds ~|W|·sqrt(fan-in) of charge; thresholds near it keep rates mid-range, and
            # q, k, v fire often enough for SDSA-3 (Q·M >= 8) to fire too
            hi = 80 if name.endswith("qkv.theta") else 400
            t[name] = rng.integers(1, hi, size=shape).astype(np.int64)
        else:
            t[name] = rng.integers(-200, 200, size=shape).astype(np.int64)
    t["stem.multiplier"] = rng.integers(0, 1 << 12, size=(dim,)).astype(np.int64)
    return SDTArtifact(
        dims=dims,
        tensors=t,
        attention=attention,
        timesteps=timesteps,
        stem_shift=12,
        meta={"random_seed": seed},
    ).validate()


#: tokens of the attention image of :func:`worst_case_sdt_images` that see the bright patches: one
#: less than the SDSA saturation, so that ``Q·M`` is 7 at one step and 8 at the next
_BRIGHT_TOKENS = 7


def worst_case_sdt(
    *,
    image: int = 8,
    patch: int = 2,
    dim: int = 8,
    heads: int = 2,
    depth: int = 2,
    mlp_dim: int = 16,
    classes: int = 4,
    attention: str = "sdsa3",
    timesteps: int = 4,
    stem_shift: int = 12,
) -> SDTArtifact:
    """An artifact whose run on :func:`worst_case_sdt_images` reaches the magnitude of every bound of
    :func:`~equispike.model.sdt_widths.analyze_sdt` exactly.

    The width analysis is symmetric in the weights (``b ± Σ|W|``) and a spike is 0 or 1, so a bound is
    reached where a row of +127 weights sees every input spike: every threshold is 1 (the smallest,
    so a neuron with a positive input fires at every step and ``V + x`` peaks at ``x``), every bias
    that follows a linear is ``+Σ|W|`` of its row (so no lower bound outgrows the upper one), and the
    stem's multiplier is as large as its shift allows. Channel 0 of the residual is the exception
    that drives SDSA-3's attention membrane to ``θ − 1 + 8``: its stem multiplier makes it fire only
    on bright patches, ``proj`` and ``fc2`` leave it alone (zero rows), and in every block head 0
    has ``q₀`` and ``k₀`` firing from their bias alone and ``v₀`` firing at step 0 on the bright
    tokens only (θ = 3) and on every token at step 1; with 7 bright tokens ``Q·M`` is 7 (no spike,
    V = 3), then 8 (``V + x`` = 11). For SDSA-3 the other q rows of head 0 stay silent, so that only
    ``q₀`` reads ``M``. The head's rows alternate in sign (with their bias), so both signs of the
    logits reach their bound.
    """
    dims = SDTDims(
        image=image, patch=patch, dim=dim, heads=heads, depth=depth, mlp_dim=mlp_dim, classes=classes
    )
    if dims.tokens <= _BRIGHT_TOKENS:
        raise ValueError(f"the worst case needs more than {_BRIGHT_TOKENS} tokens, got {dims.tokens}")
    D, F, dh = dims.dim, dims.mlp_dim, dims.dim // dims.heads
    input_max = 16
    t: dict[str, np.ndarray] = {}
    full = 127 * dims.patch_dim * input_max  # the stem's accumulator on a full-scale patch
    m_max = (1 << stem_shift) - 1
    m_ctl = -(-(2 << stem_shift) // full)  # the smallest multiplier that fires channel 0 on a bright patch
    t["stem.weight"] = np.full((D, dims.patch_dim), 127, np.int8)
    t["stem.multiplier"] = np.full(D, m_max, np.int64)
    t["stem.multiplier"][0] = m_ctl
    t["stem.bias"] = np.full((dims.tokens, D), -(-(full * m_max) >> stem_shift), np.int64)
    t["stem.bias"][:, 0] = 0
    ones = np.ones
    for i in range(depth):
        p = f"blocks.{i}."
        qkv_w = np.full((3 * D, D), 127, np.int8)
        qkv_b = np.full(3 * D, 127 * D, np.int64)
        qkv_theta = ones(3 * D, np.int64)
        q0, k0, v0 = 0, D, 2 * D
        qkv_w[[q0, k0, v0]] = 0
        qkv_b[[q0, k0]] = 2  # (0 + 2) >> 1 = 1 >= θ = 1: fires at every step
        if attention == "sdsa3":
            qkv_w[1:dh] = 0
            qkv_b[1:dh] = 0  # never fires
        qkv_w[v0, 0] = 4
        qkv_b[v0] = 4  # 8 on bright tokens: fires at once; 4 elsewhere: V = 2, then (2 + 4) >> 1 = 3
        qkv_theta[v0] = 3
        proj_w = np.full((D, D), 127, np.int8)
        proj_b = np.full(D, 127 * D, np.int64)
        fc2_w = np.full((D, F), 127, np.int8)
        fc2_b = np.full(D, 127 * F, np.int64)
        for w, b in ((proj_w, proj_b), (fc2_w, fc2_b)):
            w[0], b[0] = 0, 0
        t |= {
            p + "lif1.theta": ones(D, np.int64),
            p + "qkv.weight": qkv_w,
            p + "qkv.bias": qkv_b,
            p + "qkv.theta": qkv_theta,
            p + "proj.weight": proj_w,
            p + "proj.bias": proj_b,
            p + "lif2.theta": ones(D, np.int64),
            p + "fc1.weight": np.full((F, D), 127, np.int8),
            p + "fc1.bias": np.full(F, 127 * D, np.int64),
            p + "fc1.theta": ones(F, np.int64),
            p + "fc2.weight": fc2_w,
            p + "fc2.bias": fc2_b,
        }
    sign = np.where(np.arange(classes) % 2 == 0, 1, -1)
    t["head.theta"] = ones(D, np.int64)
    t["head.weight"] = np.broadcast_to(127 * sign[:, None], (classes, D)).astype(np.int8)
    t["head.bias"] = (127 * D * sign).astype(np.int64)
    return SDTArtifact(
        dims=dims,
        tensors=t,
        attention=attention,
        timesteps=timesteps,
        stem_shift=stem_shift,
        input_min=0,
        input_max=input_max,
        input_unit=1.0 / input_max,
        meta={"source": "worst_case_sdt"},
    ).validate()


def worst_case_sdt_images(art: SDTArtifact) -> np.ndarray:
    """The two images of :func:`worst_case_sdt`: full scale (every bound but the attention
    membrane), and the first 7 patches full scale, the rest 0 (the attention membrane)."""
    d = art.dims
    x = np.full((2, d.channels, d.image, d.image), art.input_max, np.int64)
    x[1] = art.input_min
    side = d.image // d.patch
    for n in range(_BRIGHT_TOKENS):
        r, c = divmod(n, side)
        x[1, :, r * d.patch : (r + 1) * d.patch, c * d.patch : (c + 1) * d.patch] = art.input_max
    return x
