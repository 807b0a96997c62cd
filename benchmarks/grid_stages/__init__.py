"""The stages of ``benchmarks/grid.py``, one concern a module.

* :mod:`.settings`: every knob (:class:`GridSettings`), the CLI, the ``--smoke`` sizes, the stage-cache keys;
* :mod:`.task`: the chain_sum problems, their traces, the splits and the out-of-domain texts;
* :mod:`.common`: JSON files, the log line, loading a saved model;
* :mod:`.fingerprint`: the code part of the stage cache keys (a digest of the source each stage runs);
* :mod:`.sft`: stage 1, supervised fine-tuning of the tiny model up to a dev accuracy;
* :mod:`.rl`: stage 2, one `SoftGRPOTrainer` run per training mode and seed;
* :mod:`.evaluate`: stages 3 and 4, every inference preset on the held-out problems, and the OOD drift;
* :mod:`.report`: stage 5, the Markdown tables, the plot and the results file's generated block.
"""
