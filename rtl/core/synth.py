"""The core as a synthesis block (``equispike synth --block core``).

The core's logic follows its :class:`~equispike.compiler.isa.CoreParams` only, but its memories
are sized, and initialized, by a compiled program: the block compiles a model (an artifact file,
by default the digits model of the test data, or a small random model) onto a core of ``lanes``
lanes whose memory depths are the program's needs rounded up to powers of two, then builds
:class:`~equispike.rtl.core.Core` without its trace port.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from ...compiler.isa import CoreParams
from ...compiler.program import MEMORIES, Program, compile_artifact
from .core import Core

__all__ = ["DIGITS_ARTIFACT", "RANDOM_DIMS", "fit_depths", "core_program", "SYNTH_BLOCKS"]

#: the default model: the digits demo model the core's end-to-end tests run
DIGITS_ARTIFACT = Path(__file__).resolve().parents[2] / "tests" / "data" / "digits.esa"

#: dimensions of the random model (``random=<seed>``): the smallest shape that still has every
#: operator (one block, one head), so a tiny core synthesizes in CI
RANDOM_DIMS = {"image": 4, "patch": 2, "dim": 8, "heads": 1, "depth": 1, "mlp_ratio": 2, "classes": 4}

#: the depth parameters of CoreParams, with the program memory's
DEPTH_FIELDS = tuple(sorted(set(MEMORIES.values()))) + ("prog_depth",)

_INT_FIELDS = {f.name for f in fields(CoreParams)}


def _pow2(n: int) -> int:
    """``n`` rounded up to a power of two, at least 16 (shallower memories save nothing: a
    LUT-RAM slice holds 16 words, a DP16KD far more)."""
    return max(16, 1 << max(0, n - 1).bit_length())


def fit_depths(art, lanes: int, t_max: int = 512, *, narrow: bool = False, **fixed: int) -> CoreParams:
    """The core of ``lanes`` lanes with the smallest power-of-two memory depths that run ``art``.

    The model is compiled once onto a core with very deep memories; each depth is then the rows
    the program uses (``Program.images``, one array per memory) or its instruction count, rounded
    up by :func:`_pow2`. ``V`` and ``T`` share ``n_depth``.

    Parameters
    ----------
    art : ViTArtifact
        The model.
    lanes : int
        ``P``, a power of two.
    t_max : int
        The program's step limit (it does not change the depths).
    narrow : bool
        Also cut the logic to the model: the words ``vw``, ``tw``, ``pw``, ``iw`` to the widths
        the width analysis needs, ``dw`` likewise but at least ``count_width`` (the output beats
        carry the counters in ``dw``-bit lanes), the norm units' ``cw``, ``ew``, ``max_dim`` and
        ``max_n`` to the model's, and the event counters to the program's (rounded up to a power
        of two). For the smallest core of a model, e.g. a quick synthesis.
    **fixed : int
        Other :class:`CoreParams` fields; a field given here overrides the fitted one.

    Returns
    -------
    CoreParams
    """
    if not isinstance(lanes, int) or isinstance(lanes, bool):
        raise TypeError(f"lanes must be an int, got {type(lanes).__name__}")
    if lanes < 1 or lanes & (lanes - 1):
        raise ValueError(f"lanes must be a power of two, got {lanes}")
    if not isinstance(narrow, bool):
        raise TypeError(f"narrow must be a bool, got {type(narrow).__name__}")
    for k, v in fixed.items():
        if k not in _INT_FIELDS or k == "lanes":
            raise ValueError(f"{k!r} is not a CoreParams field (fields: {sorted(_INT_FIELDS - {'lanes'})})")
        if not isinstance(v, int) or isinstance(v, bool):
            raise TypeError(f"{k} must be an int, got {type(v).__name__}")
    big = 1 << 20
    # the probe core: deep memories and wide norm rows, so the compiler names no limit of its own
    probe = CoreParams(lanes=lanes, **{**dict.fromkeys(DEPTH_FIELDS, big), "max_dim": big, "max_n": big,
                                       **{k: v for k, v in fixed.items() if k not in DEPTH_FIELDS}})
    prog = compile_artifact(art, probe, t_max)
    fit: dict[str, int] = dict.fromkeys(DEPTH_FIELDS, 0)
    for mem, attr in MEMORIES.items():
        fit[attr] = max(fit[attr], _pow2(prog.images[mem].shape[0]))
    fit["prog_depth"] = _pow2(len(prog.instrs))
    if narrow:
        for word, (needed, _have) in prog.widths.items():
            # keys read "D (dw)": the memory and the CoreParams field of its word
            attr = word[word.index("(") + 1 : word.index(")")]
            fit[attr] = needed
        fit["dw"] = max(fit["dw"], fixed.get("count_width", CoreParams.count_width))
        fit["cw"] = max(1, max(sp.C for sp in art.softmax).bit_length())
        fit["ew"] = max(1, max(art.ln_eps.values()).bit_length())
        fit["max_dim"] = _pow2(art.dims.dim)
        fit["max_n"] = _pow2(art.dims.tokens)
        fit["counters"] = _pow2(len(prog.counters))
    return CoreParams(lanes=lanes, **{**fit, **fixed})


def core_program(params: dict) -> Program:
    """The compiled program of the ``core`` block's parameters (see :data:`SYNTH_BLOCKS`).

    Parameters
    ----------
    params : dict
        ``lanes`` (int, default 64); the model: ``artifact`` (a ``.esa`` path, default
        :data:`DIGITS_ARTIFACT`) or ``random`` (an int seed: a random model of
        :data:`RANDOM_DIMS`), not both; ``narrow`` (0 or 1, default 0: the logic cut to the
        model, see :func:`fit_depths`); any other int :class:`CoreParams` field (e.g.
        ``d_depth``, ``max_dim``) overrides the fitted core. ``family`` is ignored.

    Returns
    -------
    Program
    """
    from ...model.artifact import load_artifact
    from ...model.factory import random_vit

    if not isinstance(params, dict):
        raise TypeError(f"params must be a dict, got {type(params).__name__}")
    p = {k: v for k, v in params.items() if k != "family"}
    lanes = p.pop("lanes", 64)
    narrow = p.pop("narrow", 0)
    if narrow not in (0, 1):
        raise ValueError(f"narrow must be 0 or 1, got {narrow!r}")
    artifact = p.pop("artifact", None)
    seed = p.pop("random", None)
    if artifact is not None and seed is not None:
        raise ValueError("params: give artifact or random, not both")
    if seed is not None:
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise TypeError(f"random must be an int seed, got {seed!r}")
        art = random_vit(seed, **RANDOM_DIMS)
    else:
        if artifact is not None and not isinstance(artifact, str | Path):
            raise TypeError(f"artifact must be a path, got {type(artifact).__name__}")
        art = load_artifact(DIGITS_ARTIFACT if artifact is None else artifact)
    # unknown keys are refused by fit_depths, naming the parameter
    return compile_artifact(art, fit_depths(art, lanes, narrow=bool(narrow), **p))


def _synth_core(params: dict) -> Core:
    """Synthesis factory: the core running the compiled program of ``params`` (no trace port)."""
    return Core(core_program(params), trace=False)


SYNTH_BLOCKS = {
    # the sweep: the tiny core, then the digits model at 16 and 64 lanes
    "core": (
        _synth_core,
        {"lanes": 64},
        [{"lanes": 8, "random": 1, "narrow": 1}, {"lanes": 16}, {"lanes": 64}],
    ),
}
