"""The stages of ``benchmarks/grid.py``, one concern a module.

* :mod:`.settings`: every knob (:class:`GridSettings`) and the stage-cache keys (what the stages read);
* :mod:`.cli`: the command line, the ``--smoke`` sizes (no stage imports it);
* :mod:`.rows`: the rows: row name -> how its ``SoftGRPOConfig`` is built (no stage imports it);
* :mod:`.task`: the countdown / chain_sum problems, their traces, the splits and the out-of-domain texts;
* :mod:`.common`: JSON files, the log line, wall and CPU clocks, loading a saved model;
* :mod:`.fingerprint`: the code part of the stage cache keys (a digest of the source each stage runs);
* :mod:`.sft`: stage 1, supervised fine-tuning of the tiny model up to a dev accuracy;
* :mod:`.rl`: stage 2, one `SoftGRPOTrainer` run per row and seed;
* :mod:`.evaluate`: stages 3 and 4, the inference modes (own noise included) on the held-out problems, and
  the OOD drift;
* :mod:`.stats`: standard errors over seeds and over problems, paired differences;
* :mod:`.report`: stage 5, the Markdown tables (targets included), the plot and the results file's block.
"""
