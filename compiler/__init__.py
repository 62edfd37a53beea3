"""Artifact → core program: the instruction set, the compiler and a reference executor.

The data path of the project reads artifact (``model/artifact.py``) → compiler (this package) →
core (``rtl/core/``) → harness (``sim/core/``). :mod:`.isa` defines the instructions the core's
sequencer runs, :mod:`.program` turns an artifact into a program, memory images and the core
parameters it needs, and :mod:`.isasim` executes a program in NumPy with the semantics the RTL
implements (the compiler's own check against the golden SNN, and the RTL's per-instruction reference).
"""

from .isa import CoreParams, Instr, Op
from .program import CompileError, Program, compile_artifact

__all__ = ["CoreParams", "Instr", "Op", "Program", "CompileError", "compile_artifact"]
