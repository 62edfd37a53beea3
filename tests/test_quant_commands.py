"""The train/export/eval/demo subcommands: help, a tiny end-to-end demo, cache reuse, errors."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

from equispike.quant import commands

torch.set_num_threads(1)

TINY = ["--dim", "16", "--depth", "1", "--heads", "2", "--float-epochs", "1", "--qat-epochs", "1",
        "--quiet"]


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="equispike")
    commands.register(ap.add_subparsers(dest="command", required=True))
    return ap


@pytest.mark.parametrize("cmd,text", [("train", "QAT"), ("export", "artifact"),
                                      ("eval", "--json"), ("demo", "cached")])
def test_help(cmd, text, capsys):
    with pytest.raises(SystemExit) as e:
        parser().parse_args([cmd, "--help"])
    assert e.value.code == 0
    assert text in capsys.readouterr().out


def test_every_subcommand_sets_func():
    ap = parser()
    for argv in (["train"], ["export"], ["eval"], ["demo"]):
        assert callable(ap.parse_args(argv).func)


def test_demo_end_to_end_and_cache(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["demo", "--out-dir", str(out), "--limit", "12", "--t-max", "2048", *TINY]
    assert commands.main(argv) == 0
    text = capsys.readouterr()
    assert "SNN == QANN (exact logits)  100.00 %" in text.out, text.out
    r = json.loads((out / "eval.json").read_text())
    assert r["snn_equals_qann_fraction"] == 1.0 and r["images"] == 12
    assert r["unsettled_images"] == 0
    assert set(r) >= {"float_acc", "fake_quant_acc", "qann_acc", "snn_acc", "accuracy_vs_T"}
    assert commands.main(argv) == 0  # second run reuses the cached training
    assert "reusing cached run" in capsys.readouterr().err

    assert commands.main(["eval", "--artifact", str(out / "model.esa"), "--limit", "5", "--json",
                          "--quiet"]) == 0
    r2 = json.loads(capsys.readouterr().out)
    assert r2["images"] == 5 and r2["snn_equals_qann_fraction"] == 1.0

    assert commands.main(["export", "--checkpoint", str(out / "qat.pt"), "--out",
                          str(tmp_path / "x.esa"), "--residual-bits", "12"]) == 0
    assert (tmp_path / "x.esa").is_file()


def test_errors_are_reported(tmp_path, capsys):
    bad = tmp_path / "qat.pt"
    bad.write_bytes(b"garbage")
    assert commands.main(["export", "--checkpoint", str(bad)]) == 2
    assert "corrupt" in capsys.readouterr().err
    assert commands.main(["eval", "--artifact", str(tmp_path / "none.esa"), "--quiet"]) == 2
    assert "no such artifact" in capsys.readouterr().err
