"""The command line: one exit-status convention (0 ok, 1 mismatch or missed target, 2 bad input or
usage) in every subcommand, every error one line on stderr, options that exist and say what they
mean, benchmarks that print JSON, and one definition of the level range."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from equispike.cli import EXIT_BAD_INPUT, EXIT_MISMATCH, EXIT_OK, build_parser, main
from equispike.model.artifact import ArtifactError, load_artifact, save_artifact
from equispike.model.check import check_artifact, check_random
from equispike.model.factory import random_vit
from equispike.model.neurons import LEVEL_CHOICES, check_levels

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*argv: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """``python -m equispike ...`` in a fresh process: the real exit status and streams."""
    env = dict(os.environ, PYTHONHASHSEED="0", AMARANTH_USE_YOSYS="builtin")
    env.pop("EQUISPIKE_TRACEBACK", None)
    return subprocess.run([sys.executable, "-m", "equispike", *argv], capture_output=True, text=True,
                          env=env, timeout=timeout)


def _subparsers(p: argparse.ArgumentParser, prefix: str = ""):
    """(command path, parser) of every (sub)command."""
    yield prefix, p
    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction):
            for name, sp in a.choices.items():
                yield from _subparsers(sp, f"{prefix} {name}".strip())


def test_help_states_the_exit_status_convention(capsys):
    assert main(["--help"]) == EXIT_OK
    out = capsys.readouterr().out
    for line in ("0  success", "1  a mismatch", "2  bad input or usage"):
        assert line in out
    assert (EXIT_OK, EXIT_MISMATCH, EXIT_BAD_INPUT) == (0, 1, 2)


def test_every_option_has_a_help_text_and_every_named_option_exists():
    parsers = list(_subparsers(build_parser()))
    assert {"check", "widths", "random-model", "bench golden", "bench engine", "bench units", "train",
            "export", "eval", "demo", "synth"} <= {name for name, _ in parsers}
    for name, p in parsers:
        # an option may be named by its parser or by a parent's text about a subcommand
        options = {s for _, q in _subparsers(p) for a in q._actions for s in a.option_strings}
        texts = [p.description or ""]
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction) or a.dest == "help":
                continue
            assert a.help and a.help.strip(" ()").lower() not in ("", "default %(default)s"), (
                f"{name}: option {a.option_strings or a.dest} has no help text"
            )
            texts.append(a.help)
        for t in texts:
            for opt in re.findall(r"(?<![\w-])--[a-z][a-z-]*", t):
                assert opt in options, f"{name}: help names {opt}, which is not an option of it"


def test_check_with_nothing_to_compare_exits_non_zero():
    r = run_cli("check", "--random", "0")
    assert r.returncode == EXIT_BAD_INPUT, r
    assert "--random" in r.stderr and "Traceback" not in r.stderr
    with pytest.raises(ValueError, match="nothing would be compared"):
        check_random(0)
    art = random_vit(0, dim=16)
    with pytest.raises(ValueError, match="at least one image"):
        check_artifact(art, np.zeros((0, 1, 8, 8), np.int64))


def test_check_summary_is_not_ok_when_nothing_was_compared(monkeypatch, capsys):
    from equispike.model.check import CaseResult

    monkeypatch.setattr("equispike.model.check.compare", lambda name, art, images, t_max=2048:
                        CaseResult(name=name))
    assert main(["check", "--random", "1", "--json"]) == EXIT_MISMATCH
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is False and out["elements_compared"] == 0


@pytest.mark.parametrize("argv", [
    ["check", "--random", "-3"],
    ["check", "--batch", "0"],
    ["check", "--random", "2", "--artifact", "x.esa"],
    ["random-model", "x.esa", "--levels", "2"],
    ["random-model", "x.esa", "--levels", "12"],
    ["random-model", "x.esa", "--dim", "0"],
    ["bench", "golden", "--runs", "0"],
    ["bench", "nonsense"],
    ["bench", "engine", "--runs", "3"],
    ["widths"],
    ["no-such-command"],
])
def test_usage_errors_exit_2(argv, capsys):
    assert main(argv) == EXIT_BAD_INPUT
    assert "usage:" in capsys.readouterr().err


def test_bad_input_is_one_line_on_stderr_and_exit_2(tmp_path):
    junk = tmp_path / "junk.esa"
    junk.write_bytes(b"PK\x03\x04 not really")
    listed = tmp_path / "list.esa"
    import zipfile

    with zipfile.ZipFile(listed, "w") as z:
        z.writestr("manifest.json", "[1, 2]")
    for argv, needle in (
        (["widths", str(junk)], "not a zip"),
        (["check", "--artifact", str(listed), "--batch", "1"], "expected a JSON object"),
        (["check", "--artifact", str(tmp_path / "absent.esa")], "no such artifact"),
        (["random-model", str(tmp_path / "m.esa"), "--dim", "30", "--heads", "4"], "dims.heads"),
        (["eval", "--artifact", str(junk), "--quiet"], "not a zip"),
        (["export", "--checkpoint", str(junk)], "error"),
    ):
        r = run_cli(*argv)
        assert r.returncode == EXIT_BAD_INPUT, (argv, r)
        lines = [x for x in r.stderr.splitlines() if x.strip()]
        assert len(lines) == 1 and needle in lines[0] and "Traceback" not in r.stderr, (argv, r.stderr)
    assert not (tmp_path / "m.esa").exists()


def test_unexpected_errors_are_one_line_too(monkeypatch, capsys):
    def boom(args):
        raise RuntimeError("something broke")

    monkeypatch.setattr("equispike.cli.cmd_widths", boom)
    monkeypatch.delenv("EQUISPIKE_TRACEBACK", raising=False)
    assert main(["widths", "x.esa"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error (RuntimeError): something broke" in err
    monkeypatch.setenv("EQUISPIKE_TRACEBACK", "1")
    with pytest.raises(RuntimeError):
        main(["widths", "x.esa"])


def test_bench_golden_takes_its_options_after_the_name(monkeypatch, capsys):
    seen = {}

    def fake_bench_golden(runs=7, log=print):
        seen["runs"] = runs
        log("progress line")
        return {"runs": runs, "stbif": {"neuron_updates_per_s": 1}}

    monkeypatch.setattr("equispike.model.bench.bench_golden", fake_bench_golden)
    assert main(["bench", "golden", "--json", "--runs", "3"]) == EXIT_OK
    cap = capsys.readouterr()
    assert json.loads(cap.out) == {"runs": 3, "stbif": {"neuron_updates_per_s": 1}}
    assert "progress line" in cap.err and seen["runs"] == 3


def test_bench_engine_json_and_mismatch_exit(monkeypatch, capsys):
    calls = []

    def fake_measure(seed=3, batch=2, lanes=8):
        calls.append((seed, batch, lanes))
        return {"utilization": 0.95, "mismatches": len(calls) - 1}

    monkeypatch.setattr("equispike.rtl.bench_engine.measure", fake_measure)
    assert main(["bench", "engine", "--json", "--lanes", "4", "--seed", "5"]) == EXIT_OK
    out = json.loads(capsys.readouterr().out)
    assert out["utilization"] == 0.95 and calls == [(5, 2, 4)]
    assert main(["bench", "engine", "--json"]) == EXIT_MISMATCH


def test_bench_units_json_for_real():
    r = run_cli("bench", "units", "--json")
    assert r.returncode == EXIT_OK, r.stderr
    out = json.loads(r.stdout)
    assert out["mismatches"] == 0 and len(out["rows"]) >= 8
    assert all(row["measured"] == row["stated"] for row in out["rows"])


def test_level_range_has_one_definition(tmp_path):
    """SPEC §2: L is a power of two in 4..256 — the loader, the factory, the CLI and the QAT config
    all take it from model.neurons."""
    from equispike.quant.qvit import ViTConfig

    assert LEVEL_CHOICES == (4, 8, 16, 32, 64, 128, 256)
    for bad in (2, 3, 12, 512):
        with pytest.raises(ValueError, match="power of two in"):
            check_levels(bad)
        with pytest.raises(ValueError):
            random_vit(0, dim=16, levels=bad)
        with pytest.raises(ValueError):
            ViTConfig(levels=bad)
    with pytest.raises(TypeError):
        check_levels(4.0)
    good = save_artifact(random_vit(0, dim=16, levels=4), tmp_path / "g.esa")
    assert load_artifact(good).sites["norm"].levels == 4
    import dataclasses

    art = random_vit(0, dim=16)
    art.sites["norm"] = dataclasses.replace(art.sites["norm"], levels=2)
    with pytest.raises(ArtifactError, match=r"sites.norm.levels must be a power of two in \[4, 256\]"):
        art.validate()
    for parser_name, p in _subparsers(build_parser()):
        for a in p._actions:
            if "--levels" in a.option_strings:
                assert tuple(a.choices) == LEVEL_CHOICES, parser_name


# ---- check --arch sdt: golden model == int64 PyTorch forward, every width held ------------------------
SDT_DATA = ROOT / "tests" / "data" / "sdt.esa"


def test_check_sdt_random_models_for_real():
    r = run_cli("check", "--arch", "sdt", "--random", "6", "--batch", "3", "--json")
    assert r.returncode == EXIT_OK, r.stderr
    out = json.loads(r.stdout)
    assert out["ok"] is True and out["arch"] == "sdt" and out["cases"] == 6 and out["images"] == 18
    assert out["mismatches"] == 0 and out["width_violations"] == 0 and out["first_mismatch"] is None
    assert out["elements_compared"] > 10_000 and out["quantities_checked"] >= 6 * 8
    assert len([ln for ln in r.stderr.splitlines() if ln.startswith("[")]) == 6


def test_check_sdt_artifact_dispatches_on_its_arch(tmp_path):
    """The committed sdt model, no --arch needed: every spike of every site and every step's logits."""
    from equispike.model.sdt import load_sdt_artifact
    from equispike.model.sdt_widths import analyze_sdt
    from equispike.quant.sdt_check import check_sdt_artifact

    r = run_cli("check", "--artifact", str(SDT_DATA), "--batch", "5", "--seed", "3", "--json")
    assert r.returncode == EXIT_OK, r.stderr
    out = json.loads(r.stdout)
    art = load_sdt_artifact(SDT_DATA)
    d, T = art.dims, art.timesteps
    N, D, F = d.tokens, d.dim, d.mlp_dim
    # per image and step: lif1, q, k, v, attn, lif2 (D each), fc1 (F), head (D) spikes, and the logits
    per_step = N * (7 * D + F) + d.classes
    assert out["elements_compared"] == 5 * T * per_step
    # SDSA-3: every quantity the width analysis bounds was checked
    assert out["ok"] is True and out["images"] == 5
    assert out["quantities_checked"] == len(analyze_sdt(art).bits)
    r = run_cli("check", "--artifact", str(SDT_DATA), "--arch", "sdt", "--batch", "1")
    assert r.returncode == EXIT_OK, r.stderr
    with pytest.raises(ValueError, match="at least one image"):
        check_sdt_artifact(art, np.zeros((0, 1, 8, 8), np.int64))


def test_check_sdt_mismatch_and_width_violation_exit_1(monkeypatch, capsys):
    import torch

    from equispike.model import sdt_widths
    from equispike.quant import sdt as qsdt

    real_forward = qsdt.forward_int

    def off_by_one(art, images, timesteps=None, tensors=None, spikes=None):
        return real_forward(art, images, timesteps, tensors, spikes) + torch.ones(1, dtype=torch.int64)

    monkeypatch.setattr(qsdt, "forward_int", off_by_one)
    assert main(["check", "--arch", "sdt", "--random", "2", "--batch", "2", "--json"]) == EXIT_MISMATCH
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is False and out["mismatches"] > 0
    assert out["first_mismatch"]["what"] == "logits after step 0"
    monkeypatch.setattr(qsdt, "forward_int", real_forward)

    real_analyze = sdt_widths.analyze_sdt

    def too_narrow(art):
        rep = real_analyze(art)
        rep.hi["stem.acc"] = 0  # every random model has a positive patch product
        return rep

    monkeypatch.setattr(sdt_widths, "analyze_sdt", too_narrow)
    assert main(["check", "--arch", "sdt", "--random", "2", "--batch", "2"]) == EXIT_MISMATCH
    text = capsys.readouterr().out
    assert "2 width violations" in text and "stem.acc: value" in text and "outside its proven range" in text


def test_check_sdt_bad_input_exit_2(tmp_path):
    from equispike.model.sdt import load_sdt_artifact, save_sdt_artifact

    vit = save_artifact(random_vit(0, dim=16), tmp_path / "vit.esa")
    art = load_sdt_artifact(SDT_DATA)
    art.tensors["head.theta"] = art.tensors["head.theta"] * 0  # thresholds must be >= 1
    bad = tmp_path / "bad-sdt.esa"
    import io
    import zipfile

    # write the damaged tensor into a copy of the file (save_sdt_artifact refuses invalid artifacts)
    with zipfile.ZipFile(SDT_DATA) as src, zipfile.ZipFile(bad, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "head.theta.npy":
                buf = io.BytesIO()
                np.save(buf, art.tensors["head.theta"])
                data = buf.getvalue()
            dst.writestr(info, data)
    with pytest.raises(ArtifactError):
        save_sdt_artifact(art, tmp_path / "refused.esa")
    for argv, needle in (
        (["check", "--arch", "sdt", "--artifact", str(vit)], "arch"),
        (["check", "--arch", "vit", "--artifact", str(SDT_DATA)], "arch"),
        (["check", "--artifact", str(bad)], "tensors.head.theta"),
        (["check", "--arch", "sdt", "--artifact", str(tmp_path / "absent.esa")], "no such artifact"),
    ):
        r = run_cli(*argv)
        assert r.returncode == EXIT_BAD_INPUT, (argv, r)
        lines = [x for x in r.stderr.splitlines() if x.strip()]
        assert len(lines) == 1 and needle in lines[0] and "Traceback" not in r.stderr, (argv, r.stderr)
    for argv in (["check", "--arch", "snn"], ["check", "--arch", "sdt", "--random", "0"]):
        assert main(argv) == EXIT_BAD_INPUT
