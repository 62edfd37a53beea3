"""sdt artifacts: round trip, byte reproducibility, a clear error naming the field for every
malformation, and the ViT loader untouched."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest

from equispike.cli import main as cli_main
from equispike.model.artifact import ArtifactError, load_artifact, save_artifact
from equispike.model.factory import random_vit
from equispike.model.sdt import SDT_SCHEMA_VERSION, load_sdt_artifact, random_sdt, run_sdt, save_sdt_artifact


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("sdt") / "model.esa"
    art = random_sdt(3, depth=2, dim=16, heads=2, mlp_dim=24, timesteps=3)
    from equispike.model.sdt_widths import analyze_sdt

    art.widths = dict(analyze_sdt(art).bits)
    save_sdt_artifact(art, path)
    return art, path


def test_round_trip_is_exact_and_byte_reproducible(saved, tmp_path):
    art, path = saved
    back = load_sdt_artifact(path)
    assert back.manifest() == art.manifest()
    assert back.manifest()["schema_version"] == SDT_SCHEMA_VERSION and back.manifest()["arch"] == "sdt"
    assert sorted(back.tensors) == sorted(art.tensors)
    for k in art.tensors:
        np.testing.assert_array_equal(back.tensors[k], art.tensors[k])
    x = np.random.default_rng(0).integers(0, 17, (4, 8, 8))
    np.testing.assert_array_equal(run_sdt(back, x).logits, run_sdt(art, x).logits)
    again = save_sdt_artifact(back, tmp_path / "again.esa")
    assert again.read_bytes() == path.read_bytes()


def test_vit_artifacts_still_load_and_the_vit_loader_names_sdt(saved, tmp_path):
    vit = save_artifact(random_vit(0, dim=16), tmp_path / "vit.esa")
    assert load_artifact(vit).manifest()["arch"] == "vit"
    with pytest.raises(ArtifactError, match="arch: 'sdt'"):
        load_artifact(saved[1])
    with pytest.raises(ArtifactError, match="arch: expected 'sdt'"):
        load_sdt_artifact(vit)


def _rewrite(src, dst, manifest=None, tensors=None, drop=()):
    with zipfile.ZipFile(src) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    m = json.loads(members["manifest.json"])
    if manifest:
        manifest(m)
    members["manifest.json"] = json.dumps(m).encode()
    for name, a in (tensors or {}).items():
        buf = io.BytesIO()
        np.lib.format.write_array(buf, a)
        members[f"{name}.npy"] = buf.getvalue()
    for name in drop:
        del members[f"{name}.npy"]
    with zipfile.ZipFile(dst, "w") as zf:
        for n, b in members.items():
            zf.writestr(n, b)
    return dst


def _set(*path, value):
    def f(m):
        for p in path[:-1]:
            m = m[p]
        m[path[-1]] = value

    return f


def _del(*path):
    def f(m):
        for p in path[:-1]:
            m = m[p]
        del m[path[-1]]

    return f


MANIFEST_CASES = [
    (_set("schema_version", value=1), "schema_version"),
    (_set("schema_version", value="2"), "schema_version"),
    (_set("attention", value="sdsa2"), "attention"),
    (_set("attention", value=3), "attention"),
    (_set("timesteps", value=0), "timesteps"),
    (_set("timesteps", value=4.0), "timesteps"),
    (_set("timesteps", value=True), "timesteps"),
    (_del("timesteps"), "timesteps"),
    (_set("dims", "heads", value=3), "dims.heads"),
    (_set("dims", "dim", value=0), "dims.dim"),
    (_set("dims", "depth", value=5), "tensors: missing"),
    (_set("dims", "mlp_dim", value=8), "tensors.blocks.0.fc1"),
    (_set("dims", "zz", value=1), "dims: unknown"),
    (_set("stem", "shift", value=-1), "stem.shift"),
    (_set("stem", "shift", value=99), "stem.shift"),
    (_set("input", "max", value=-1), "input"),
    (_set("input", "unit", value="x"), "input.unit"),
    (_set("zz_extra", value=1), "manifest: unknown"),
    (_set("widths", "logits", value=2), "widths.logits"),
    (_set("widths", "nonsense", value=64), "widths.nonsense"),
    (_set("meta", value=[]), "meta"),
    (_set("tensors", value=["stem.weight"]), "tensors"),
]


@pytest.mark.parametrize("mutate,field", MANIFEST_CASES)
def test_malformed_manifest_names_the_field(saved, tmp_path, mutate, field):
    bad = _rewrite(saved[1], tmp_path / "bad.esa", manifest=mutate)
    with pytest.raises(ArtifactError, match=field.replace(".", r"\.")):
        load_sdt_artifact(bad)


TENSOR_CASES = [
    ({"stem.weight": np.full((16, 4), 200, np.int16)}, "tensors.stem.weight: int8"),
    ({"blocks.0.qkv.theta": np.zeros(48, np.int64)}, "tensors.blocks.0.qkv.theta: LIF thresholds"),
    ({"head.theta": np.ones(15, np.int64)}, "tensors.head.theta: shape"),
    ({"head.bias": np.zeros(10, np.float32)}, "tensors.head.bias: values must be integers"),
    ({"stem.multiplier": -np.ones(16, np.int64)}, "tensors.stem.multiplier"),
    ({"stem.bias": np.full((16, 16), 2**45, np.int64)}, "tensors.stem.bias: magnitude"),
]


@pytest.mark.parametrize("tensors,field", TENSOR_CASES)
def test_malformed_tensor_names_the_field(saved, tmp_path, tensors, field):
    bad = _rewrite(saved[1], tmp_path / "bad.esa", tensors=tensors)
    with pytest.raises(ArtifactError, match=field.replace(".", r"\.")):
        load_sdt_artifact(bad)


def test_missing_tensor_and_damaged_files(saved, tmp_path):
    bad = _rewrite(
        saved[1],
        tmp_path / "bad.esa",
        drop=["blocks.1.fc2.bias"],
        manifest=lambda m: m["tensors"].remove("blocks.1.fc2.bias"),
    )
    with pytest.raises(ArtifactError, match="missing.*blocks.1.fc2.bias"):
        load_sdt_artifact(bad)
    junk = tmp_path / "junk.esa"
    junk.write_bytes(b"not a zip")
    with pytest.raises(ArtifactError, match="not a zip"):
        load_sdt_artifact(junk)
    with pytest.raises(ArtifactError, match="no such artifact"):
        load_sdt_artifact(tmp_path / "absent.esa")


def test_cli_reports_bad_sdt_artifacts_in_one_line(saved, tmp_path, capsys):
    bad = _rewrite(saved[1], tmp_path / "bad.esa", manifest=_set("attention", value="sdsa9"))
    assert cli_main(["eval", "--artifact", str(bad), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "attention" in err and "Traceback" not in err
    assert cli_main(["eval", "--arch", "sdt", "--artifact", str(tmp_path / "none.esa"), "--quiet"]) == 2
    assert "no such artifact" in capsys.readouterr().err
    # check reads the artifact's arch; a vit check of it is refused by name
    assert cli_main(["check", "--artifact", str(saved[1])]) == 0
    assert "0 mismatches, 0 width violations" in capsys.readouterr().out
    assert cli_main(["check", "--arch", "vit", "--artifact", str(saved[1])]) == 2
    assert "'sdt' artifact" in capsys.readouterr().err
    assert cli_main(["check", "--artifact", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "attention" in err and "Traceback" not in err
    assert cli_main(["widths", str(saved[1]), "--json"]) == 0
    w = json.loads(capsys.readouterr().out)
    assert w["logits"]["bits"] == saved[0].widths["logits"]
