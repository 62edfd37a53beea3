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
