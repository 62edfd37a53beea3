"""Malformed artifacts never crash the loader: a Hypothesis fuzzer builds well over 1,000 broken
``.esa`` files (manifest of the wrong type, every field of the wrong type or range, lists for
objects, huge integers, NaN, negative units, missing/extra/misshapen tensors, wrong dtypes, damaged
``.npy`` headers, truncated or corrupted zips) and every one ends in an ``ArtifactError`` that names
a field, or loads as a valid artifact when the change happened to be harmless. Failed writes leave
the previous file and no temporary file behind."""

from __future__ import annotations

import copy
import io
import json
import os
import tempfile
import warnings
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from equispike.model.artifact import ArtifactError, ViTArtifact, load_artifact, save_artifact
from equispike.model.factory import random_vit

EXAMPLES = 1500
MIN_EXAMPLES = 1000
TOP_FIELDS = ("manifest", "format", "schema_version", "arch", "dims", "input", "residual", "layernorm",
              "softmax", "sites", "tensors", "widths", "meta")


def _tiny() -> ViTArtifact:
    return random_vit(5, image=4, patch=2, dim=8, heads=2, depth=1, mlp_ratio=1, levels=4, classes=2,
                      calibration_images=2)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """The valid tiny artifact as (file bytes, manifest, {member: bytes}, {member: array})."""
    path = save_artifact(_tiny(), tmp_path_factory.mktemp("fuzz") / "base.esa")
    data = path.read_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    manifest = json.loads(members.pop("manifest.json"))
    arrays = {n: np.load(io.BytesIO(b), allow_pickle=False) for n, b in members.items()}
    return data, manifest, members, arrays


def _paths(obj, prefix=()):
    """Every path into a JSON value (containers included)."""
    out = [prefix] if prefix else []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, (*prefix, i))
    return out


def _get(obj, path):
    for p in path:
        obj = obj[p]
    return obj


BAD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, -1, 1, 2, 3, 4, 7, 255, 256, 257, 512, 2**31, 2**40, 2**63, 2**64, 10**30,
                     -(10**30)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([float("nan"), float("inf"), float("-inf"), -1.0, 0.0, 0.5, 16.0]),
    st.text(max_size=6),
    st.lists(st.integers(-3, 3), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(-3, 3), max_size=2),
)


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, a, allow_pickle=a.dtype.hasobject)
    return buf.getvalue()


@st.composite
def mutations(draw, base):
    """One malformation of the base artifact: (kind, detail, file bytes)."""
    data, manifest, members, arrays = base
    kind = draw(st.sampled_from(["manifest_value", "manifest_value", "manifest_value", "manifest_delete",
                                 "manifest_extra", "manifest_container", "manifest_whole", "tensor",
                                 "tensor", "npy_bytes", "zip_bytes"]))
    m = copy.deepcopy(manifest)
    mem = dict(members)
    detail: tuple = ()
    manifest_bytes = None
    if kind.startswith("manifest_") and kind != "manifest_whole":
        path = draw(st.sampled_from(_paths(m)))
        parent, key = _get(m, path[:-1]), path[-1]
        detail = path
        if kind == "manifest_value":
            new = draw(BAD_VALUES)
            parent[key] = new
            # a value of another JSON type must be reported at that very field
            old = _get(manifest, path)
            same_type = type(old) is type(new) or (isinstance(old, float) and type(new) is int)
            detail = (*path, "type" if not same_type else "value")
        elif kind == "manifest_delete":
            del parent[key]
        elif kind == "manifest_extra":
            target = _get(m, path) if isinstance(_get(m, path), dict | list) else parent
            if isinstance(target, dict):
                target["zz_extra"] = draw(BAD_VALUES)
            else:
                target.append(draw(BAD_VALUES))
        else:  # an object where a list belongs and the other way round
            v = _get(m, path)
            parent[key] = list(v.values()) if isinstance(v, dict) else {str(i): x for i, x in enumerate(v)} \
                if isinstance(v, list) else [v]
    elif kind == "manifest_whole":
        choice = draw(st.sampled_from(["list", "number", "string", "null", "bad_json", "not_utf8", "deep"]))
        manifest_bytes = {
            "list": json.dumps([m]).encode(),
            "number": b"3",
            "string": b'"manifest"',
            "null": b"null",
            "bad_json": json.dumps(m).encode()[: draw(st.integers(0, 200))],
            "not_utf8": b"\xff\xfe{" + json.dumps(m).encode(),
            "deep": b"[" * 100_000 + b"]" * 100_000,
        }[choice]
        detail = (choice,)
    elif kind == "tensor":
        name = draw(st.sampled_from(sorted(mem)))
        a = arrays[name]
        op = draw(st.sampled_from(["drop", "extra", "shape", "dtype", "values", "scalar", "empty",
                                   "fortran", "big_endian", "not_npy"]))
        detail = (name, op)
        if op == "drop":
            del mem[name]
        elif op == "extra":
            extra = draw(st.sampled_from(["extra.npy", "blocks.9.qkv.weight.npy",
                                          "sites.blocks.9.q.theta.npy", "head.weight.npy.npy", ".npy"]))
            mem[extra] = _npy(np.zeros(3, np.int64))
        elif op == "shape":
            shape = draw(st.sampled_from([(a.size + 1,), (1, a.size), (2, 2, 2),
                                          (a.shape[0] + 1,) + a.shape[1:]]))
            mem[name] = _npy(np.ones(shape, a.dtype))
        elif op == "dtype":
            dt = draw(st.sampled_from(["float32", "float64", "bool", "complex64", "U3", "M8[s]", "V4",
                                       "i4,i4", "object", "float16"]))
            if dt == "object":
                b = np.empty(a.shape, dtype=object)
                b[...] = 1
            else:
                b = np.zeros(a.shape, dtype=dt)
            mem[name] = _npy(b)
            detail = (name, op, dt)
        elif op == "values":
            v = draw(st.sampled_from([2**50, -(2**50), 0, -1, 128, -129, 2**63 - 1]))
            dt = np.uint64 if v == 2**63 - 1 else np.int64
            mem[name] = _npy(np.full(a.shape, v, dtype=dt))
        elif op == "scalar":
            mem[name] = _npy(np.array(1, np.int64))
        elif op == "empty":
            mem[name] = _npy(np.zeros((0,) + a.shape[1:], np.int64))
        elif op == "fortran":  # valid: same values, column-major on disk
            mem[name] = _npy(np.asfortranarray(a))
        elif op == "big_endian":  # valid: same values, other byte order
            mem[name] = _npy(a.astype(a.dtype.newbyteorder(">")))
        else:
            mem[name[:-4] + ".txt"] = mem.pop(name)
    elif kind == "npy_bytes":
        name = draw(st.sampled_from(sorted(mem)))
        raw = mem[name]
        op = draw(st.sampled_from(["truncate", "garbage", "huge_shape", "bad_header", "version"]))
        detail = (name, op)
        if op == "truncate":
            mem[name] = raw[: draw(st.integers(0, len(raw) - 1))]
        elif op == "garbage":
            mem[name] = draw(st.binary(max_size=64))
        elif op == "huge_shape":
            mem[name] = raw.replace(b"'shape': (", b"'shape': (99999999999999, ", 1)
        elif op == "bad_header":
            mem[name] = raw.replace(b"'descr'", b"'dexcr'", 1)
        else:
            mem[name] = raw[:6] + bytes([draw(st.integers(3, 255)), 0]) + raw[8:]
    if kind != "zip_bytes":
        if manifest_bytes is None:
            manifest_bytes = json.dumps(m).encode()
        buf = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # duplicate names are part of the fuzz
            with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
                zf.writestr("manifest.json", manifest_bytes)
                for n, b in mem.items():
                    zf.writestr(n, b)
                if draw(st.integers(0, 30)) == 0:
                    zf.writestr("manifest.json", b"{}")
                    detail = (*detail, "duplicate")
        return kind, detail, buf.getvalue()
    op = draw(st.sampled_from(["truncate", "flip", "empty", "prefix"]))
    if op == "truncate":
        return kind, (op,), data[: draw(st.integers(0, len(data) - 1))]
    if op == "flip":
        i = draw(st.integers(0, len(data) - 1))
        return kind, (op, i), data[:i] + bytes([data[i] ^ draw(st.integers(1, 255))]) + data[i + 1:]
    if op == "empty":
        return kind, (op,), b""
    return kind, (op,), b"PK\x03\x04" + data[:100]


def _names_a_field(msg: str, path: Path) -> bool:
    return msg.startswith(str(path)) or any(msg.startswith(f) for f in TOP_FIELDS)


def test_fuzzed_artifacts_end_in_an_artifact_error_naming_the_field(base):
    stats: Counter = Counter()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzzed.esa"

        @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(mut=mutations(base))
        def run(mut):
            kind, detail, data = mut
            path.write_bytes(data)
            stats["examples"] += 1
            try:
                art = load_artifact(path)
            except ArtifactError as exc:
                msg = str(exc)
                stats["rejected"] += 1
                assert _names_a_field(msg, path), f"{kind} {detail}: message names no field: {msg}"
                if kind == "manifest_value" and detail[-1] == "type" and detail[0] not in ("meta",):
                    field = str(detail[-2])
                    assert field in msg, f"{kind} {detail}: {field!r} not named in: {msg}"
                return
            # an accepted file is a whole, valid artifact
            stats["accepted"] += 1
            assert isinstance(art, ViTArtifact)
            art.validate()

        run()
    assert stats["examples"] >= MIN_EXAMPLES, stats
    # the fuzzer is mostly malformed input (harmless changes, e.g. in meta, do load)
    assert stats["rejected"] >= 0.8 * stats["examples"], stats


def test_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path, monkeypatch):
    art = _tiny()
    path = save_artifact(art, tmp_path / "m.esa")
    before = path.read_bytes()

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="No space"):
        save_artifact(random_vit(6, image=4, patch=2, dim=8, heads=2, depth=1, mlp_ratio=1, levels=4,
                                 classes=2, calibration_images=2), path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.esa"]


SWEEP_VALUES = [None, "x", [], {}, True, 1.5, float("nan"), float("inf"), -1, 0, 10**30, -(10**30)]


def _write(path: Path, manifest_bytes: bytes, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("manifest.json", manifest_bytes)
        for n, b in members.items():
            zf.writestr(n, b)
    return path


def test_every_manifest_field_with_every_bad_value(base, tmp_path):
    """Not left to chance: each field of the manifest (containers included) set to each value of a
    fixed list of wrong types and ranges, and deleted. A change of JSON type is reported at that
    field; any other rejection names a field; nothing else escapes."""
    _, manifest, members, _ = base
    path = tmp_path / "sweep.esa"
    tried = rejected = 0
    for p in _paths(manifest):
        for value in [*SWEEP_VALUES, "<delete>"]:
            m = copy.deepcopy(manifest)
            parent = _get(m, p[:-1])
            if value == "<delete>":
                del parent[p[-1]]
            else:
                parent[p[-1]] = value
            _write(path, json.dumps(m).encode(), members)
            tried += 1
            try:
                load_artifact(path)
            except ArtifactError as exc:
                rejected += 1
                msg = str(exc)
                assert _names_a_field(msg, path), f"{p} = {value!r}: {msg}"
                old = _get(manifest, p)
                retyped = value != "<delete>" and type(old) is not type(value) and not (
                    isinstance(old, float) and type(value) is int)
                if retyped and p[0] != "meta":
                    assert str(p[-1]) in msg, f"{p} = {value!r}: field not named in {msg}"
    assert tried > 1000 and rejected > 0.9 * tried, (tried, rejected)


def test_every_tensor_missing_misshapen_or_of_a_wrong_dtype(base, tmp_path):
    _, manifest, members, arrays = base
    path = tmp_path / "t.esa"
    mb = json.dumps(manifest).encode()
    for name, a in arrays.items():
        key = name[:-4]
        for label, mem in (
            ("missing", {n: b for n, b in members.items() if n != name}),
            ("misshapen", {**members, name: _npy(np.ones((a.size + 1,), np.int64))}),
            ("float", {**members, name: _npy(a.astype(np.float64))}),
            ("bool", {**members, name: _npy(a.astype(bool))}),
            ("truncated", {**members, name: members[name][:-1]}),
        ):
            _write(path, mb, mem)
            with pytest.raises(ArtifactError) as e:
                load_artifact(path)
            assert key in str(e.value), f"{name} {label}: {e.value}"
