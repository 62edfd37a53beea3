"""PyTorch side of equispike: the digits ViT, LSQ quantization-aware training and integer export.

Modules: :mod:`.lsq` (quantizers), :mod:`.qvit` (model), :mod:`.data` (digits split), :mod:`.train`
(training, checkpoints), :mod:`.export` (ViTArtifact export), :mod:`.evaluate` (QANN/SNN evaluation),
:mod:`.commands` (``train``/``export``/``eval``/``demo`` subcommands), :mod:`.report` (README figures).
"""
