"""--threads: the long golden-model sweeps split over worker processes give the same bytes for every N."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from equispike.cli import main
from equispike.model.artifact import load_artifact
from equispike.model.factory import random_images
from equispike.model.parallel import WorkerError, check_threads, ordered_map
from equispike.quant.evaluate import run_snn

DIGITS = Path(__file__).parent / "data" / "digits.esa"


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def test_check_random_json_is_the_same_bytes_for_any_threads(capsys):
    argv = ["check", "--random", "3", "--batch", "2", "--json"]
    rc1, out1, err1 = _run(argv + ["--threads", "1"], capsys)
    rc2, out2, err2 = _run(argv + ["--threads", "2"], capsys)
    assert rc1 == rc2 == 0
    assert out1 == out2  # stdout byte for byte
    assert err1 == err2  # progress lines too, in case order
    summary = json.loads(out1)
    assert summary["cases"] == 3 and summary["elements_compared"] > 0


def test_check_sdt_json_is_the_same_bytes_for_any_threads(capsys):
    """The sdt check's workers run torch too (one thread each): same stdout and progress lines."""
    argv = ["check", "--arch", "sdt", "--random", "3", "--batch", "2", "--json"]
    rc1, out1, err1 = _run(argv + ["--threads", "1"], capsys)
    rc2, out2, err2 = _run(argv + ["--threads", "2"], capsys)
    assert rc1 == rc2 == 0
    assert out1 == out2 and err1 == err2
    summary = json.loads(out1)
    assert summary["arch"] == "sdt" and summary["cases"] == 3 and summary["elements_compared"] > 0


def test_eval_golden_snn_is_the_same_for_any_threads():
    art = load_artifact(DIGITS)
    x = random_images(5, art, 10)
    one = run_snn(art, x, chunk=4, threads=1)  # 3 chunks: 4, 4, 2 images
    two = run_snn(art, x, chunk=4, threads=2)
    whole = run_snn(art, x, chunk=10, threads=1)  # and the chunking does not matter either
    compared = 0
    for name in ("logits", "step_logits", "settle_step", "acs", "macs", "energy_pj"):
        a, b, c = getattr(one, name), getattr(two, name), getattr(whole, name)
        assert a.dtype == b.dtype and np.array_equal(a, b), name
        assert np.array_equal(a, c), name
        compared += a.size
    assert one.logits.shape == (10, art.dims.classes) and (one.settle_step >= 0).all()
    assert compared > 10 * art.dims.classes


@pytest.mark.parametrize("cmd", [["check", "--random", "1"], ["eval", "--artifact", str(DIGITS)]])
@pytest.mark.parametrize("bad", ["0", "-2", "1.5", "two"])
def test_bad_threads_is_a_usage_error(cmd, bad, capsys):
    rc, out, err = _run(cmd + ["--threads", bad], capsys)
    assert rc == 2 and out == ""
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"equispike {cmd[0]}: error: argument --threads")


def test_threads_parameter_is_checked():
    with pytest.raises(TypeError, match="threads"):
        check_threads(2.0)
    with pytest.raises(TypeError, match="threads"):
        check_threads(True)
    with pytest.raises(ValueError, match="threads"):
        check_threads(0)
    assert check_threads(3) == 3


def test_a_task_error_is_raised_not_hung():
    # int("x") raises ValueError in a worker: it comes back unchanged, the other tasks are cancelled
    assert ordered_map(int, [("1",), ("2",), ("3",)], threads=2) == [1, 2, 3]
    with pytest.raises(ValueError, match="invalid literal"):
        ordered_map(int, [("1",), ("x",), ("3",)], threads=2)


def test_a_dead_worker_is_a_clear_error():
    with pytest.raises(WorkerError, match="worker process died"):
        ordered_map(os._exit, [(3,), (4,)], threads=2)


def test_cli_reports_a_worker_error_in_one_line(monkeypatch, capsys):
    monkeypatch.setattr("equispike.model.check._random_case", lambda *a: 1 / 0)
    rc, _, err = _run(["check", "--random", "2", "--threads", "1"], capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "ZeroDivisionError" in err
