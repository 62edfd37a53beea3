"""Malformed sdt artifacts never crash the loader: the ViT fuzzer's mutations (every manifest field
of a wrong type or range, containers swapped, missing/extra/misshapen tensors, wrong dtypes, damaged
``.npy`` headers and zips) applied to an sdt artifact end in an ``ArtifactError`` naming a field, or
load as a valid artifact when the change was harmless."""

from __future__ import annotations

import copy
import io
import json
import tempfile
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from equispike.model.artifact import ArtifactError
from equispike.model.sdt import SDTArtifact, load_sdt_artifact, random_sdt, save_sdt_artifact
from equispike.tests.test_artifact_fuzz import SWEEP_VALUES, _get, _paths, mutations

EXAMPLES = 400
TOP_FIELDS = (
    "manifest",
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
)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    art = random_sdt(5, image=4, patch=2, dim=8, heads=2, depth=1, mlp_dim=4, classes=2, timesteps=2)
    from equispike.model.sdt_widths import analyze_sdt

    art.widths = {k: b for k, b in analyze_sdt(art).bits.items() if k in ("logits", "stem.acc")}
    path = save_sdt_artifact(art, tmp_path_factory.mktemp("fuzz") / "base.esa")
    data = path.read_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    manifest = json.loads(members.pop("manifest.json"))
    arrays = {n: np.load(io.BytesIO(b), allow_pickle=False) for n, b in members.items()}
    return data, manifest, members, arrays


def _names_a_field(msg: str, path: Path) -> bool:
    return msg.startswith(str(path)) or any(msg.startswith(f) for f in TOP_FIELDS)


def test_fuzzed_sdt_artifacts_end_in_an_artifact_error_naming_the_field(base):
    stats: Counter = Counter()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzzed.esa"

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        @given(mut=mutations(base))
        def run(mut):
            kind, detail, data = mut
            path.write_bytes(data)
            stats["examples"] += 1
            try:
                art = load_sdt_artifact(path)
            except ArtifactError as exc:
                msg = str(exc)
                stats["rejected"] += 1
                assert _names_a_field(msg, path), f"{kind} {detail}: message names no field: {msg}"
                if kind == "manifest_value" and detail[-1] == "type" and detail[0] != "meta":
                    assert str(detail[-2]) in msg, f"{kind} {detail}: {detail[-2]!r} not named in: {msg}"
                return
            stats["accepted"] += 1
            assert isinstance(art, SDTArtifact)
            art.validate()

        run()
    assert stats["examples"] >= EXAMPLES // 2, stats
    assert stats["rejected"] >= 0.8 * stats["examples"], stats


def test_every_sdt_manifest_field_with_every_bad_value(base, tmp_path):
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
            with zipfile.ZipFile(path, "w") as zf:
                zf.writestr("manifest.json", json.dumps(m).encode())
                for n, b in members.items():
                    zf.writestr(n, b)
            tried += 1
            try:
                load_sdt_artifact(path)
            except ArtifactError as exc:
                rejected += 1
                assert _names_a_field(str(exc), path), f"{p} = {value!r}: {exc}"
    assert tried > 100 and rejected >= 0.8 * tried
