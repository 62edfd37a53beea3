"""The core: one programmable machine that runs a whole compiled model.

:mod:`.core` holds the sequencer and the memories, :mod:`.units` the execution units (one per
instruction class), :mod:`.scanner` the event scanner between spike rows and the engine, and
:mod:`.ports` the memory-port signatures the units share.
"""

from .core import CYCLE_CLASSES, STATUS_FIELDS, Core, lane_bits, out_rows

__all__ = ["Core", "CYCLE_CLASSES", "STATUS_FIELDS", "lane_bits", "out_rows"]
