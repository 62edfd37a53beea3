"""The integer artifact: one ``.esa`` file (a zip) holding ``manifest.json`` and ``.npy`` tensors.

The manifest carries a schema version, the model dimensions, every quantizer site's levels and sign
(and residual multiplier), operator parameters and declared hardware widths. Θ, weights, biases and
embeddings are integer tensors. :func:`load_artifact` validates everything and names the offending
field; :func:`save_artifact` writes atomically and byte-reproducibly.
"""

from __future__ import annotations

import functools
import io
import json
import math
import os
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .intops import LayerNormParams, SoftmaxParams
from .neurons import check_levels, site_bounds

__all__ = [
    "SCHEMA_VERSION",
    "ArtifactError",
    "Site",
    "ViTDims",
    "ViTArtifact",
    "save_artifact",
    "load_artifact",
    "block_site_names",
    "atomic_write_bytes",
    "artifact_arch",
    "MAX_TENSOR_MAGNITUDE",
    "MAX_INPUT_MAGNITUDE",
]

FORMAT = "equispike-artifact"
SCHEMA_VERSION = 1
BLOCK_SITES = ("norm1", "q", "k", "v", "attn", "after_attn", "proj", "norm2", "fc1", "fc2")
UNSIGNED_SITES = ("attn", "fc1")
RESIDUAL_SITES = ("patch_embed", "proj", "fc2")
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
# Limits that keep every int64 computation of the width analysis and the model exact (no wrap) and a
# hostile file from exhausting memory; real models are far inside them.
MAX_TENSOR_MAGNITUDE = 2**40
MAX_INPUT_MAGNITUDE = 2**20
MAX_DIM = 2**24
MAX_DEPTH = 1024
MAX_UNPACKED_BYTES = 2**30
_MANIFEST_KEYS = {
    "format", "schema_version", "arch", "dims", "input", "residual", "layernorm", "softmax", "sites",
    "tensors", "widths", "meta",
}


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

    # cached: the golden model asks for them at every quantizer and step, and the fields are frozen
    @functools.cached_property
    def qn(self) -> int:
        return site_bounds(self.levels, self.signed)[0]

    @functools.cached_property
    def qp(self) -> int:
        return site_bounds(self.levels, self.signed)[1]

    @functools.cached_property
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
            if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= MAX_DIM:
                raise ArtifactError(f"dims.{name} must be an integer in [1, {MAX_DIM}], got {v!r}")
        if not _is_int(self.depth) or not 0 <= self.depth <= MAX_DEPTH:
            raise ArtifactError(f"dims.depth must be an integer in [0, {MAX_DEPTH}], got {self.depth!r}")
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
            if not isinstance(s, Site):
                raise ArtifactError(f"{where}: expected a Site, got {type(s).__name__}")
            try:
                check_levels(s.levels, f"{where}.levels")
            except (TypeError, ValueError) as exc:
                raise ArtifactError(str(exc)) from None
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
            if int(th.max()) > MAX_TENSOR_MAGNITUDE:
                raise ArtifactError(f"{where}.theta: {int(th.max())} exceeds {MAX_TENSOR_MAGNITUDE}")
            if short in RESIDUAL_SITES:
                if not isinstance(s.M, int) or isinstance(s.M, bool) or s.M < 1:
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
            if a.size and max(abs(int(a.min())), abs(int(a.max()))) >= MAX_TENSOR_MAGNITUDE:
                raise ArtifactError(
                    f"tensors.{name}: magnitude {max(abs(int(a.min())), abs(int(a.max())))} too large"
                )
        if not isinstance(self.softmax, list) or not all(isinstance(p, SoftmaxParams) for p in self.softmax):
            raise ArtifactError("softmax: expected a list of SoftmaxParams")
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
        if not _is_int(self.residual_R) or not 0 <= self.residual_R <= 24:
            raise ArtifactError(f"residual.R must be an integer in [0, 24], got {self.residual_R!r}")
        for key in ("min", "max"):
            v = getattr(self, f"input_{key}")
            if not _is_int(v) or abs(v) > MAX_INPUT_MAGNITUDE:
                raise ArtifactError(
                    f"input.{key} must be an integer in [-{MAX_INPUT_MAGNITUDE}, {MAX_INPUT_MAGNITUDE}], "
                    f"got {v!r}"
                )
        if self.input_min > self.input_max:
            raise ArtifactError(f"input: need min <= max, got [{self.input_min}, {self.input_max}]")
        u = self.input_unit
        if not isinstance(u, int | float) or isinstance(u, bool) or not math.isfinite(u) or u <= 0:
            raise ArtifactError(f"input.unit must be a finite number > 0, got {u!r}")
        if not isinstance(self.widths, dict) or not all(
            isinstance(k, str) and _is_int(v) for k, v in self.widths.items()
        ):
            raise ArtifactError(f"widths: expected an object of integer bit widths, got {self.widths!r}")
        if not isinstance(self.meta, dict):
            raise ArtifactError(f"meta: expected an object, got {type(self.meta).__name__}")
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


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {int: "an integer", float: "a number", bool: "a boolean", str: "a string", dict: "an object",
             list: "a list"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _field(d: dict, key: str, where: str, kind: type | tuple[type, ...]):
    """``d[key]`` if it has JSON type ``kind`` (booleans are not numbers), else an ArtifactError."""
    if not isinstance(d, dict):
        raise ArtifactError(f"{where}: expected an object, got {type(d).__name__} {_short(d)}")
    if key not in d:
        raise ArtifactError(f"{where}.{key}: missing")
    v = d[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(v, kinds) or (isinstance(v, bool) and bool not in kinds):
        raise ArtifactError(f"{where}.{key}: expected {_kind_name(kind)}, got {type(v).__name__} {_short(v)}")
    return v


def _short(v) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _no_unknown(d: dict, allowed, where: str) -> None:
    unknown = sorted(set(d) - set(allowed))
    if unknown:
        raise ArtifactError(f"{where}: unknown fields {unknown[:5]}")


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
    return atomic_write_bytes(path, buf.getvalue())


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temp file in the same directory, fsync, rename: a reader
    sees the old file or the whole new one, never a part; a failed write leaves no temp file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates 0600; give the file the mode a plain open() would (0666 minus the umask)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _array_field(key: str) -> str:
    return key if key.startswith("sites.") else f"tensors.{key}"


def _read_npy(key: str, data: bytes) -> np.ndarray:
    """One ``.npy`` member as a native int64 array; the header is checked before any allocation."""
    where = _array_field(key)
    f = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except (ValueError, TypeError, SyntaxError, EOFError, OverflowError) as exc:
        raise ArtifactError(f"{where}: unreadable .npy ({exc})") from None
    if dtype.hasobject or dtype.kind not in "iu":
        raise ArtifactError(f"{where}: values must be integers, got dtype {dtype}")
    count = math.prod(shape)
    if count * dtype.itemsize != len(data) - f.tell():
        raise ArtifactError(
            f"{where}: header says shape {shape} of {dtype} ({count * dtype.itemsize} bytes), the member "
            f"holds {len(data) - f.tell()}"
        )
    a = np.frombuffer(data, dtype=dtype, count=count, offset=f.tell())
    a = a.reshape(shape[::-1]).T if fortran else a.reshape(shape)
    if a.size:
        lo, hi = int(a.min()), int(a.max())
        if max(-lo, hi) >= MAX_TENSOR_MAGNITUDE:
            raise ArtifactError(f"{where}: magnitude {max(-lo, hi)} too large (limit {MAX_TENSOR_MAGNITUDE})")
    return np.ascontiguousarray(a, dtype=np.int64)


def _read_zip(path: Path) -> tuple[bytes, dict[str, bytes]]:
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            names = [i.filename for i in infos]
            if len(set(names)) != len(names):
                dup = sorted({n for n in names if names.count(n) > 1})
                raise ArtifactError(f"{path}: duplicate members {dup[:5]}")
            if "manifest.json" not in names:
                raise ArtifactError(f"{path}: manifest.json missing")
            if sum(i.file_size for i in infos) > MAX_UNPACKED_BYTES:
                raise ArtifactError(f"{path}: members unpack to more than {MAX_UNPACKED_BYTES} bytes")
            for n in names:
                if n != "manifest.json" and not n.endswith(".npy"):
                    raise ArtifactError(f"{path}: unexpected member {n!r}")
            members = {n: zf.read(n) for n in names}
    except zipfile.BadZipFile as exc:
        raise ArtifactError(f"{path}: not an equispike artifact (not a zip file: {exc})") from None
    except (zipfile.LargeZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, ValueError,
            OSError) as exc:
        if isinstance(exc, ArtifactError):
            raise
        raise ArtifactError(f"{path}: damaged zip ({type(exc).__name__}: {exc})") from None
    manifest = members.pop("manifest.json")
    return manifest, {n[:-4]: data for n, data in members.items()}


def artifact_arch(path: str | os.PathLike) -> str | None:
    """The ``arch`` an artifact's manifest declares, or None when it cannot be read (the full
    loader then reports why, naming the field)."""
    try:
        with zipfile.ZipFile(path) as zf:
            info = zf.getinfo("manifest.json")
            if info.file_size > MAX_UNPACKED_BYTES:
                return None
            arch = json.loads(zf.read(info)).get("arch")
    except Exception:  # noqa: BLE001 - any damage is reported by the loader that follows
        return None
    return arch if isinstance(arch, str) else None


def load_artifact(path: str | os.PathLike) -> ViTArtifact:
    """Read and validate an artifact; :class:`ArtifactError` names any bad field.

    Every malformed input (not a zip, a damaged member, a manifest of the wrong shape or type, a
    value out of range, missing, extra or misshapen tensors, non-integer dtypes) ends in an
    ``ArtifactError``; arrays come back as int64 (weights int8).
    """
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: no such artifact file")
    raw_manifest, raw = _read_zip(path)
    try:
        m = json.loads(raw_manifest)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError are ValueErrors
        raise ArtifactError(f"manifest.json: invalid JSON ({exc})") from None
    if not isinstance(m, dict):
        raise ArtifactError(f"manifest.json: expected a JSON object, got {type(m).__name__}")
    if m.get("format") != FORMAT:
        raise ArtifactError(f"format: expected {FORMAT!r}, got {_short(m.get('format'))}")
    if m.get("arch") == "sdt":
        # checked before the schema version: sdt artifacts carry a later version of their own
        raise ArtifactError(
            "arch: 'sdt' is a spike-driven transformer artifact; read it with "
            "equispike.model.sdt.load_sdt_artifact (equispike eval reads both), this reads 'vit'"
        )
    sv = m.get("schema_version")
    if not _is_int(sv) or sv != SCHEMA_VERSION:
        raise ArtifactError(
            f"schema_version: this equispike reads version {SCHEMA_VERSION}, got {_short(sv)}"
        )
    if m.get("arch") != "vit":
        raise ArtifactError(f"arch: only 'vit' is supported, got {_short(m.get('arch'))}")
    _no_unknown(m, _MANIFEST_KEYS, "manifest")

    dm = _field(m, "dims", "manifest", dict)
    _no_unknown(dm, ViTDims.__dataclass_fields__, "dims")
    dims = ViTDims(**{k: _field(dm, k, "dims", int) for k in ViTDims.__dataclass_fields__})

    listed = _field(m, "tensors", "manifest", list)
    for i, n in enumerate(listed):
        if not isinstance(n, str):
            raise ArtifactError(f"tensors[{i}]: expected a tensor name, got {_short(n)}")
    if len(set(listed)) != len(listed):
        raise ArtifactError("tensors: the manifest lists a tensor twice")

    sites_m = _field(m, "sites", "manifest", dict)
    want_sites = site_names(dims)
    missing = [n for n in want_sites if n not in sites_m]
    extra = [n for n in sites_m if n not in want_sites]
    if missing:
        raise ArtifactError(f"sites: missing {missing[:5]}")
    if extra:
        raise ArtifactError(f"sites: unexpected {extra[:5]}")
    site_fields: dict[str, tuple[int, bool, int | None]] = {}
    for n in want_sites:
        where = f"sites.{n}"
        sm = _field(sites_m, n, "sites", dict)
        _no_unknown(sm, ("levels", "signed", "M", "theta"), where)
        if "theta" in sm and sm["theta"] != f"sites.{n}.theta":
            raise ArtifactError(f"{where}.theta: expected 'sites.{n}.theta', got {_short(sm['theta'])}")
        M = sm.get("M")
        if M is not None and not _is_int(M):
            raise ArtifactError(f"{where}.M: expected an integer, got {type(M).__name__} {_short(M)}")
        site_fields[n] = (_field(sm, "levels", where, int), _field(sm, "signed", where, bool), M)

    sm_list = _field(m, "softmax", "manifest", list)
    softmax = []
    for i, p in enumerate(sm_list):
        where = f"softmax[{i}]"
        if not isinstance(p, dict):
            raise ArtifactError(f"{where}: expected an object, got {type(p).__name__} {_short(p)}")
        _no_unknown(p, "CGHFP", where)
        try:
            softmax.append(SoftmaxParams(**{k: _field(p, k, where, int) for k in "CGHFP"}))
        except ValueError as exc:
            raise ArtifactError(f"{where}: {exc}") from None

    ln = _field(m, "layernorm", "manifest", dict)
    _no_unknown(ln, ("K", "P", "E"), "layernorm")
    eps_m = _field(ln, "E", "layernorm", dict)
    ln_eps = {k: _field(eps_m, k, "layernorm.E", int) for k in eps_m}
    inp = _field(m, "input", "manifest", dict)
    _no_unknown(inp, ("min", "max", "unit"), "input")
    res = _field(m, "residual", "manifest", dict)
    _no_unknown(res, ("R",), "residual")
    widths = m.get("widths", {})
    if not isinstance(widths, dict):
        raise ArtifactError(f"widths: expected an object, got {type(widths).__name__}")
    widths = {k: _field(widths, k, "widths", int) for k in widths}
    meta = m.get("meta", {})
    if not isinstance(meta, dict):
        raise ArtifactError(f"meta: expected an object, got {type(meta).__name__}")

    theta_keys = {f"sites.{n}.theta" for n in want_sites}
    missing_t = sorted(theta_keys - set(raw))
    if missing_t:
        raise ArtifactError(f"tensors: missing {missing_t[:5]}")
    tensor_keys = sorted(set(raw) - theta_keys)
    if sorted(listed) != tensor_keys:
        diff = sorted(set(listed) ^ set(tensor_keys))
        raise ArtifactError(f"tensors: manifest list and stored tensors differ on {diff[:5]}")
    want = expected_tensors(dims)
    missing_t = sorted(set(want) - set(tensor_keys))
    extra_t = sorted(set(tensor_keys) - set(want))
    if missing_t:
        raise ArtifactError(f"tensors: missing {missing_t[:5]}")
    if extra_t:
        raise ArtifactError(f"tensors: unexpected {extra_t[:5]}")
    arrays = {k: _read_npy(k, raw[k]) for k in sorted(raw)}

    sites = {}
    for n, (levels, signed, M) in site_fields.items():
        sites[n] = Site(name=n, levels=levels, signed=signed, theta=arrays.pop(f"sites.{n}.theta"), M=M)
    art = ViTArtifact(
        dims=dims,
        sites=sites,
        tensors=arrays,
        softmax=softmax,
        ln_eps=ln_eps,
        ln_K=_field(ln, "K", "layernorm", int),
        ln_P=_field(ln, "P", "layernorm", int),
        residual_R=_field(res, "R", "residual", int),
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
