"""The integer artifact: one ``.esa`` file (a zip) holding ``manifest.json`` and ``.npy`` tensors.

The manifest carries a schema version, the model dimensions, every quantizer site's levels and sign
(and residual multiplier), operator parameters and declared hardware widths. Θ, weights, biases and
embeddings are integer tensors. :func:`load_artifact` validates everything and names the offending
field; :func:`save_artifact` writes atomically and byte-reproducibly.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .intops import LayerNormParams, SoftmaxParams
from .neurons import site_bounds

__all__ = [
    "SCHEMA_VERSION",
    "ArtifactError",
    "Site",
    "ViTDims",
    "ViTArtifact",
    "save_artifact",
    "load_artifact",
    "block_site_names",
]

FORMAT = "equispike-artifact"
SCHEMA_VERSION = 1
BLOCK_SITES = ("norm1", "q", "k", "v", "attn", "after_attn", "proj", "norm2", "fc1", "fc2")
UNSIGNED_SITES = ("attn", "fc1")
RESIDUAL_SITES = ("patch_embed", "proj", "fc2")
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


class ArtifactError(ValueError):
    """A malformed or inconsistent artifact; the message names the field."""


@dataclass(frozen=True)
class Site:
    """A quantizer site: ``levels`` levels, signed or not, thresholds Θ, optional residual multiplier."""

    name: str
    levels: int
    signed: bool
    theta: np.ndarray
    M: int | None = None

    @property
    def qn(self) -> int:
        return site_bounds(self.levels, self.signed)[0]

    @property
    def qp(self) -> int:
        return site_bounds(self.levels, self.signed)[1]

    @property
    def smax(self) -> int:
        """Largest tracer magnitude."""
        return max(-self.qn, self.qp)


class DerivedDims:
    """Sizes derived from ``image``, ``patch``, ``channels``, ``dim`` and ``heads`` (one definition for
    the artifact's dims and the PyTorch model's config)."""

    image: int
    patch: int
    channels: int
    dim: int
    heads: int

    @property
    def patches(self) -> int:
        return (self.image // self.patch) ** 2

    @property
    def tokens(self) -> int:
        return self.patches + 1

    @property
    def patch_dim(self) -> int:
        return self.channels * self.patch * self.patch

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads


@dataclass(frozen=True)
class ViTDims(DerivedDims):
    """Dimensions of the SpikeZIP-family ViT (SPEC §7)."""

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
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ArtifactError(f"dims.{name} must be a positive integer, got {v!r}")
        if not isinstance(self.depth, int) or self.depth < 0:
            raise ArtifactError(f"dims.depth must be a non-negative integer, got {self.depth!r}")
        if self.image % self.patch:
            raise ArtifactError(f"dims.patch ({self.patch}) must divide dims.image ({self.image})")
        if self.dim % self.heads:
            raise ArtifactError(f"dims.heads ({self.heads}) must divide dims.dim ({self.dim})")



def block_site_names(i: int) -> list[str]:
    return [f"blocks.{i}.{s}" for s in BLOCK_SITES]


def _site_channels(dims: ViTDims, name: str) -> int:
    """Channels on the last axis of a site (Θ is per channel after a linear, else scalar allowed)."""
    short = name.rsplit(".", 1)[-1]
    return {
        "patch_embed": dims.dim,
        "q": dims.dim,
        "k": dims.dim,
        "v": dims.dim,
        "proj": dims.dim,
        "fc1": dims.mlp_dim,
        "fc2": dims.dim,
        "norm1": dims.dim,
        "norm2": dims.dim,
        "norm": dims.dim,
        "after_attn": dims.dim,
        "attn": dims.tokens,
    }[short]


def site_names(dims: ViTDims) -> list[str]:
    names = ["patch_embed"]
    for i in range(dims.depth):
        names += block_site_names(i)
    return names + ["norm"]


def expected_tensors(dims: ViTDims) -> dict[str, tuple[tuple[int, ...], str]]:
    """Name → (shape, kind) of every tensor; kind is ``weight`` (int8 range) or ``int``."""
    D, F = dims.dim, dims.mlp_dim
    t: dict[str, tuple[tuple[int, ...], str]] = {
        "patch_embed.weight": ((D, dims.patch_dim), "weight"),
        "patch_embed.bias": ((D,), "int"),
        "cls": ((D,), "int"),
        "pos": ((dims.tokens, D), "int"),
        "norm.gamma": ((D,), "int"),
        "norm.beta": ((D,), "int"),
        "head.weight": ((dims.classes, D), "weight"),
        "head.bias": ((dims.classes,), "int"),
    }
    for i in range(dims.depth):
        p = f"blocks.{i}."
        t |= {
            p + "ln1.gamma": ((D,), "int"),
            p + "ln1.beta": ((D,), "int"),
            p + "qkv.weight": ((3 * D, D), "weight"),
            p + "qkv.bias": ((3 * D,), "int"),
            p + "proj.weight": ((D, D), "weight"),
            p + "proj.bias": ((D,), "int"),
            p + "ln2.gamma": ((D,), "int"),
            p + "ln2.beta": ((D,), "int"),
            p + "fc1.weight": ((F, D), "weight"),
            p + "fc1.bias": ((F,), "int"),
            p + "fc2.weight": ((D, F), "weight"),
            p + "fc2.bias": ((D,), "int"),
        }
    return t


@dataclass
class ViTArtifact:
    """An exported integer ViT: manifest fields plus integer tensors. Build it, then :meth:`validate`."""

    dims: ViTDims
    sites: dict[str, Site]
    tensors: dict[str, np.ndarray]
    softmax: list[SoftmaxParams]  # one per block
    ln_eps: dict[str, int]  # "blocks.i.ln1", "blocks.i.ln2", "norm" -> E
    ln_K: int = 16
    ln_P: int = 10
    residual_R: int = 8
    input_min: int = 0
    input_max: int = 16
    input_unit: float = 1.0
    widths: dict[str, int] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def site(self, name: str) -> Site:
        try:
            return self.sites[name]
        except KeyError:
            raise KeyError(f"no site {name!r}; sites are {sorted(self.sites)}") from None

    def ln_params(self, name: str) -> LayerNormParams:
        return LayerNormParams(E=self.ln_eps[name], K=self.ln_K, P=self.ln_P)

    def ln_names(self) -> list[str]:
        names = []
        for i in range(self.dims.depth):
            names += [f"blocks.{i}.ln1", f"blocks.{i}.ln2"]
        return names + ["norm"]

    # -- validation ---------------------------------------------------------------------------
    def validate(self, check_widths: bool = True) -> ViTArtifact:
        """Check every field; raise :class:`ArtifactError` naming the first bad one."""
        dims = self.dims
        want_sites = site_names(dims)
        missing = [s for s in want_sites if s not in self.sites]
        extra = [s for s in self.sites if s not in want_sites]
        if missing:
            raise ArtifactError(f"sites: missing {missing}")
        if extra:
            raise ArtifactError(f"sites: unexpected {extra}")
        for name in want_sites:
            s = self.sites[name]
            where = f"sites.{name}"
            if not isinstance(s.levels, int) or s.levels < 2 or s.levels > 256 or s.levels & (s.levels - 1):
                raise ArtifactError(f"{where}.levels must be a power of two in [2, 256], got {s.levels!r}")
            short = name.rsplit(".", 1)[-1]
            want_signed = short not in UNSIGNED_SITES
            if s.signed is not want_signed:
                raise ArtifactError(f"{where}.signed must be {want_signed} (SPEC §7), got {s.signed!r}")
            th = np.asarray(s.theta)
            if th.dtype.kind not in "iu":
                raise ArtifactError(f"{where}.theta must be integer, got dtype {th.dtype}")
            ch = _site_channels(dims, name)
            if th.ndim != 1 or th.shape[0] not in (1, ch):
                raise ArtifactError(f"{where}.theta must have shape (1,) or ({ch},), got {th.shape}")
            if int(th.min()) < 1:
                raise ArtifactError(f"{where}.theta must be >= 1, got min {int(th.min())}")
            if short in RESIDUAL_SITES:
                if not isinstance(s.M, int) or s.M < 1:
                    raise ArtifactError(
                        f"{where}.M (residual multiplier) must be an integer >= 1, got {s.M!r}"
                    )
            elif s.M is not None:
                raise ArtifactError(f"{where}.M is only allowed on residual branch sites {RESIDUAL_SITES}")
        want = expected_tensors(dims)
        missing_t = sorted(set(want) - set(self.tensors))
        extra_t = sorted(set(self.tensors) - set(want))
        if missing_t:
            raise ArtifactError(f"tensors: missing {missing_t}")
        if extra_t:
            raise ArtifactError(f"tensors: unexpected {extra_t}")
        for name, (shape, kind) in want.items():
            a = self.tensors[name]
            if not isinstance(a, np.ndarray) or a.dtype.kind not in "iu":
                got = getattr(a, "dtype", type(a).__name__)
                raise ArtifactError(f"tensors.{name}: values must be integers, got {got}")
            if a.shape != shape:
                raise ArtifactError(f"tensors.{name}: shape {a.shape} does not match dims, expected {shape}")
            if kind == "weight" and a.size and (int(a.min()) < -128 or int(a.max()) > 127):
                raise ArtifactError(f"tensors.{name}: int8 weights must lie in [-128, 127]")
            if a.size and max(abs(int(a.min())), abs(int(a.max()))) >= 2**40:
                raise ArtifactError(
                    f"tensors.{name}: magnitude {max(abs(int(a.min())), abs(int(a.max())))} too large"
                )
        if len(self.softmax) != dims.depth:
            raise ArtifactError(f"softmax: need one entry per block ({dims.depth}), got {len(self.softmax)}")
        want_ln = set(self.ln_names())
        if set(self.ln_eps) != want_ln:
            raise ArtifactError(f"layernorm.E: need entries {sorted(want_ln)}, got {sorted(self.ln_eps)}")
        for k, e in self.ln_eps.items():
            try:
                LayerNormParams(E=e, K=self.ln_K, P=self.ln_P)
            except ValueError as exc:
                raise ArtifactError(f"layernorm.{k}: {exc}") from None
        if not isinstance(self.residual_R, int) or not 0 <= self.residual_R <= 24:
            raise ArtifactError(f"residual.R must be an integer in [0, 24], got {self.residual_R!r}")
        if (
            not (isinstance(self.input_min, int) and isinstance(self.input_max, int))
            or self.input_min > self.input_max
        ):
            raise ArtifactError(f"input: need integers min <= max, got [{self.input_min}, {self.input_max}]")
        if check_widths:
            from .widths import analyze

            report = analyze(self)  # raises ArtifactError when a bound exceeds 64 bits
            for key, bits in self.widths.items():
                if key not in report.bits:
                    raise ArtifactError(f"widths.{key}: unknown quantity")
                if not isinstance(bits, int) or bits < report.bits[key]:
                    raise ArtifactError(
                        f"widths.{key}: declared {bits} bits cannot hold the worst case "
                        f"[{report.lo[key]}, {report.hi[key]}], which needs {report.bits[key]}"
                    )
        return self

    # -- manifest ---------------------------------------------------------------------------
    def manifest(self) -> dict[str, Any]:
        d = self.dims
        return {
            "format": FORMAT,
            "schema_version": SCHEMA_VERSION,
            "arch": "vit",
            "dims": {k: getattr(d, k) for k in ViTDims.__dataclass_fields__},
            "input": {"min": self.input_min, "max": self.input_max, "unit": self.input_unit},
            "residual": {"R": self.residual_R},
            "layernorm": {"K": self.ln_K, "P": self.ln_P, "E": dict(sorted(self.ln_eps.items()))},
            "softmax": [{"C": p.C, "G": p.G, "H": p.H, "F": p.F, "P": p.P} for p in self.softmax],
            "sites": {
                n: {"levels": s.levels, "signed": s.signed, "M": s.M, "theta": f"sites.{n}.theta"}
                for n, s in self.sites.items()
            },
            "tensors": sorted(self.tensors),
            "widths": dict(sorted(self.widths.items())),
            "meta": self.meta,
        }


def _field(d: dict, key: str, where: str, kind: type | tuple[type, ...]):
    if not isinstance(d, dict) or key not in d:
        raise ArtifactError(f"{where}.{key}: missing")
    v = d[key]
    if not isinstance(v, kind) or (kind is int and isinstance(v, bool)):
        raise ArtifactError(f"{where}.{key}: expected {kind}, got {type(v).__name__} {v!r}")
    return v


def save_artifact(art: ViTArtifact, path: str | os.PathLike) -> Path:
    """Validate and write ``art`` to ``path`` atomically (temp file + rename); byte-reproducible."""
    art.validate()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = dict(art.tensors)
    for n, s in art.sites.items():
        arrays[f"sites.{n}.theta"] = np.asarray(s.theta, dtype=np.int64)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        info = zipfile.ZipInfo("manifest.json", date_time=_ZIP_DATE)
        info.compress_type = zipfile.ZIP_DEFLATED
        zf.writestr(info, json.dumps(art.manifest(), indent=1, sort_keys=True))
        for name in sorted(arrays):
            a = np.ascontiguousarray(arrays[name])
            nb = io.BytesIO()
            np.lib.format.write_array(nb, a, allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, nb.getvalue())
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(buf.getvalue())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_artifact(path: str | os.PathLike) -> ViTArtifact:
    """Read and validate an artifact; :class:`ArtifactError` names any bad field."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: no such artifact file")
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise ArtifactError(f"{path}: not an equispike artifact (not a zip file: {exc})") from None
    with zf:
        names = zf.namelist()
        if "manifest.json" not in names:
            raise ArtifactError(f"{path}: manifest.json missing")
        try:
            m = json.loads(zf.read("manifest.json"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ArtifactError(f"manifest.json: invalid JSON ({exc})") from None
        arrays: dict[str, np.ndarray] = {}
        for n in names:
            if n == "manifest.json":
                continue
            if not n.endswith(".npy"):
                raise ArtifactError(f"{path}: unexpected member {n!r}")
            try:
                arrays[n[:-4]] = np.lib.format.read_array(io.BytesIO(zf.read(n)), allow_pickle=False)
            except (ValueError, OSError) as exc:
                raise ArtifactError(f"tensors.{n[:-4]}: unreadable ({exc})") from None
    if m.get("format") != FORMAT:
        raise ArtifactError(f"format: expected {FORMAT!r}, got {m.get('format')!r}")
    if m.get("schema_version") != SCHEMA_VERSION:
        raise ArtifactError(
            f"schema_version: this equispike reads version {SCHEMA_VERSION}, got {m.get('schema_version')!r}"
        )
    if m.get("arch") != "vit":
        raise ArtifactError(f"arch: only 'vit' is supported, got {m.get('arch')!r}")
    dm = _field(m, "dims", "manifest", dict)
    unknown = set(dm) - set(ViTDims.__dataclass_fields__)
    if unknown:
        raise ArtifactError(f"dims: unknown fields {sorted(unknown)}")
    dims = ViTDims(**{k: _field(dm, k, "dims", int) for k in ViTDims.__dataclass_fields__})
    sites_m = _field(m, "sites", "manifest", dict)
    sites = {}
    for n, sm in sites_m.items():
        key = f"sites.{n}.theta"
        if key not in arrays:
            raise ArtifactError(f"tensors: missing {key}")
        M = sm.get("M") if isinstance(sm, dict) else None
        if M is not None and (not isinstance(M, int) or isinstance(M, bool)):
            raise ArtifactError(f"sites.{n}.M: expected an integer, got {M!r}")
        sites[n] = Site(
            name=n,
            levels=_field(sm, "levels", f"sites.{n}", int),
            signed=_field(sm, "signed", f"sites.{n}", bool),
            theta=arrays.pop(key),
            M=M,
        )
    sm_list = _field(m, "softmax", "manifest", list)
    softmax = []
    for i, p in enumerate(sm_list):
        try:
            softmax.append(SoftmaxParams(**{k: _field(p, k, f"softmax[{i}]", int) for k in "CGHFP"}))
        except ValueError as exc:
            raise ArtifactError(f"softmax[{i}]: {exc}") from None
    ln = _field(m, "layernorm", "manifest", dict)
    inp = _field(m, "input", "manifest", dict)
    listed = _field(m, "tensors", "manifest", list)
    if sorted(listed) != sorted(arrays):
        diff = sorted(set(listed) ^ set(arrays))
        raise ArtifactError(f"tensors: manifest list and stored tensors differ on {diff}")
    art = ViTArtifact(
        dims=dims,
        sites=sites,
        tensors=arrays,
        softmax=softmax,
        ln_eps={k: _field(ln["E"], k, "layernorm.E", int) for k in _field(ln, "E", "layernorm", dict)},
        ln_K=_field(ln, "K", "layernorm", int),
        ln_P=_field(ln, "P", "layernorm", int),
        residual_R=_field(_field(m, "residual", "manifest", dict), "R", "residual", int),
        input_min=_field(inp, "min", "input", int),
        input_max=_field(inp, "max", "input", int),
        input_unit=float(_field(inp, "unit", "input", (int, float))),
        widths=dict(m.get("widths", {})),
        meta=dict(m.get("meta", {})),
    )
    return art.validate()
