"""``equispike.formal``: SymbiYosys proofs of the RTL blocks.

Each proof is an Amaranth wrapper around a small configuration of a block with free inputs
(``AnySeq``/``AnyConst``), the block's preconditions as ``Assume`` and its properties as
``Assert``, run by :func:`~equispike.formal.run.run_sby` (``yowasp-sby`` with Yices 2):

* :class:`~equispike.formal.neuron.NeuronLaneProof`: an ST-BIF lane of ``NeuronArray``;
* :class:`~equispike.formal.engine.EngineProof`: the step currents of ``SpikeAdditionEngine``;
* :class:`~equispike.formal.contract.StreamContractProof`: the RFC 61 stream rules on any
  block's output stream.
"""
