"""Artifact format: round trip, reproducible bytes, and a clear error for every kind of bad input."""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from equispike.cli import main
from equispike.model.artifact import ArtifactError, Site, load_artifact, save_artifact
from equispike.model.factory import random_images, random_vit
from equispike.model.vit import qann_forward
from equispike.model.widths import analyze


@pytest.fixture(scope="module")
def art():
    return random_vit(4, depth=2, dim=16, heads=2, levels=16)


def _rewrite(src: Path, dst: Path, edit_manifest=None, drop=(), add=None, replace_arrays=None) -> Path:
    """Copy an artifact zip, editing its manifest or members (to forge bad artifacts)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for n in zin.namelist():
            data = zin.read(n)
            if n == "manifest.json" and edit_manifest:
                m = json.loads(data)
                edit_manifest(m)
                data = json.dumps(m).encode()
            if n in drop:
                continue
            if replace_arrays and n in replace_arrays:
                buf = io.BytesIO()
                np.lib.format.write_array(buf, replace_arrays[n])
                data = buf.getvalue()
            zout.writestr(n, data)
        for n, a in (add or {}).items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, a)
            zout.writestr(n, buf.getvalue())
    return dst


def test_round_trip_and_reproducible_bytes(art, tmp_path):
    a = save_artifact(art, tmp_path / "a.esa")
    b = save_artifact(art, tmp_path / "b.esa")
    assert a.read_bytes() == b.read_bytes()
    back = load_artifact(a)
    images = random_images(0, art, 5)
    assert np.array_equal(qann_forward(back, images).logits, qann_forward(art, images).logits)
    for k, v in art.tensors.items():
        assert np.array_equal(back.tensors[k], v), k
    assert list(tmp_path.glob(".*tmp")) == []


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda m: m.__setitem__("schema_version", 99), "schema_version"),
        (lambda m: m.__setitem__("format", "x"), "format"),
        (lambda m: m["sites"]["blocks.0.q"].__setitem__("levels", 12), r"sites.blocks.0.q.levels"),
        (
            lambda m: m["sites"]["blocks.0.attn"].__setitem__("signed", True),
            r"sites.blocks.0.attn.signed",
        ),
        (lambda m: m["dims"].__setitem__("dim", 24), "shape"),
        (lambda m: m["dims"].pop("heads"), "dims.heads"),
        (lambda m: m["sites"]["blocks.0.proj"].__setitem__("M", 0), "M"),
        (
            lambda m: m["widths"].__setitem__("blocks.0.q.membrane", 4),
            r"widths.blocks.0.q.membrane",
        ),
        (lambda m: m["widths"].__setitem__("nonsense", 4), "widths.nonsense"),
        (lambda m: m["softmax"].pop(), "softmax"),
        (lambda m: m["layernorm"]["E"].__setitem__("norm", 0), "layernorm"),
    ],
)
def test_bad_manifest_is_rejected_naming_the_field(art, tmp_path, edit, message):
    good = save_artifact(art, tmp_path / "good.esa")
    bad = _rewrite(good, tmp_path / "bad.esa", edit_manifest=edit)
    with pytest.raises(ArtifactError, match=message):
        load_artifact(bad)


def test_bad_tensors_are_rejected(art, tmp_path):
    good = save_artifact(art, tmp_path / "good.esa")
    cases = {
        "missing": dict(drop=("blocks.0.fc1.bias.npy",)),
        "extra": dict(add={"stowaway.npy": np.zeros(3, np.int64)}),
        "shape": dict(replace_arrays={"blocks.0.fc1.bias.npy": np.zeros(5, np.int64)}),
        "float": dict(replace_arrays={"head.weight.npy": np.zeros((10, 16), np.float32)}),
        "theta": dict(replace_arrays={"sites.blocks.0.q.theta.npy": np.zeros(16, np.int64)}),
        "int8 range": dict(replace_arrays={"head.weight.npy": np.full((10, 16), 300, np.int64)}),
    }
    expect = {
        "missing": "blocks.0.fc1.bias",
        "extra": "stowaway",
        "shape": "shape",
        "float": "integers",
        "theta": ">= 1",
        "int8 range": "int8",
    }
    for name, kw in cases.items():
        bad = _rewrite(good, tmp_path / f"{name}.esa", **kw)
        with pytest.raises(ArtifactError, match=expect[name]):
            load_artifact(bad)


def test_not_an_artifact(tmp_path):
    p = tmp_path / "junk.esa"
    p.write_bytes(b"hello")
    with pytest.raises(ArtifactError, match="not a zip"):
        load_artifact(p)
    with pytest.raises(ArtifactError, match="no such"):
        load_artifact(tmp_path / "absent.esa")
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("x.npy", b"")
    with pytest.raises(ArtifactError, match="manifest.json missing"):
        load_artifact(p)


def test_widths_declared_in_manifest_are_checked(art, tmp_path):
    report = analyze(art)
    ok = replace(art, widths=dict(report.bits))
    load_artifact(save_artifact(ok, tmp_path / "ok.esa"))
    tight = replace(art, widths={"residual": report.bits["residual"] - 1})
    with pytest.raises(ArtifactError, match="widths.residual"):
        tight.validate()


def test_failed_save_keeps_the_old_file(art, tmp_path):
    path = save_artifact(art, tmp_path / "m.esa")
    before = path.read_bytes()
    sites = dict(art.sites)
    sites["norm"] = Site("norm", 16, True, np.array([0]))
    with pytest.raises(ArtifactError, match="theta"):
        save_artifact(replace(art, sites=sites), path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.esa"]


def test_overflowing_model_is_rejected(art):
    tensors = dict(art.tensors)
    tensors["pos"] = np.full_like(art.tensors["pos"], 2**39)
    with pytest.raises(ArtifactError, match="more than 64"):
        replace(art, tensors=tensors).validate()


def test_cli_random_model_widths_and_check(tmp_path, capsys):
    out = tmp_path / "r.esa"
    assert main(["random-model", str(out), "--dim", "16", "--depth", "1"]) == 0
    assert main(["widths", str(out), "--json"]) == 0
    capsys.readouterr()
    assert main(["check", "--artifact", str(out), "--batch", "4", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["mismatches"] == 0
    bad = tmp_path / "bad.esa"
    bad.write_text("nope")
    assert main(["check", "--artifact", str(bad)]) == 2
    assert "not a zip" in capsys.readouterr().err
