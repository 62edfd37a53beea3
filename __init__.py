"""equispike: a Transformer, its exactly equivalent spiking network, and FPGA hardware that runs it."""

__version__ = "0.1.0"
