"""Packaging: one importable package, `equispike`, with no generic top-level module names."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import equispike


def test_layout_is_one_package():
    for sub in ("model", "quant", "rtl", "sim"):
        spec = importlib.util.find_spec(f"equispike.{sub}")
        assert spec is not None, sub
    assert equispike.__version__


def test_no_generic_top_level_modules_installed():
    names = ("model", "sim", "rtl", "quant")
    code = f"import importlib.util as u, sys; sys.exit(any(u.find_spec(m) for m in {names!r}))"
    assert subprocess.run([sys.executable, "-c", code], cwd="/").returncode == 0


def test_console_help_explains_subcommands():
    out = subprocess.run([sys.executable, "-m", "equispike", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for cmd in ("check", "widths", "bench", "synth"):
        assert cmd in out.stdout
