"""The core as a synthesis block (``equispike synth --block core``).

The core's logic follows its :class:`~equispike.compiler.isa.CoreParams` only, but its memories
are sized, and initialized, by a compiled program: the block compiles a model (an artifact file,
by default the digits model of the test data, or a small random model) onto a core of ``lanes``
lanes whose memory depths are the program's needs rounded up to powers of two, then builds
:class:`~equispike.rtl.core.Core` without its trace port.
"""

from __future__ import annotations

from pathlib import Path

from ...compiler.program import Program, compile_artifact, fit_params
from .core import Core

__all__ = ["DIGITS_ARTIFACT", "RANDOM_DIMS", "core_program", "SYNTH_BLOCKS"]

#: the default model: the digits demo model the core's end-to-end tests run
DIGITS_ARTIFACT = Path(__file__).resolve().parents[2] / "tests" / "data" / "digits.esa"

#: dimensions of the random model (``random=<seed>``): the smallest shape that still has every
#: operator (one block, one head), so a tiny core synthesizes in CI
RANDOM_DIMS = {"image": 4, "patch": 2, "dim": 8, "heads": 1, "depth": 1, "mlp_ratio": 2, "classes": 4}


def core_program(params: dict) -> Program:
    """The compiled program of the ``core`` block's parameters (see :data:`SYNTH_BLOCKS`).

    Parameters
    ----------
    params : dict
        ``lanes`` (int, default 64); the model: ``artifact`` (a ``.esa`` path, default
        :data:`DIGITS_ARTIFACT`) or ``random`` (an int seed: a random model of
        :data:`RANDOM_DIMS`), not both; ``narrow`` (0 or 1, default 0: the logic cut to the
        model, see :func:`~equispike.compiler.program.fit_params`); any other int
        :class:`CoreParams` field (e.g. ``d_depth``, ``max_dim``) overrides the fitted core.
        ``family`` is ignored.

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
    # unknown keys are refused by fit_params, naming the parameter
    return compile_artifact(art, fit_params(art, lanes, narrow=bool(narrow), **p))


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
