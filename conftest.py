"""Collection of the package modules for their doctests (pytest's --doctest-modules).

`hf_softthink.lm_eval_harness` imports lm-evaluation-harness, an optional extra: without it the module is not
collected (its tests in tests/test_lm_eval_harness.py skip with the reason).
"""

import importlib.util

collect_ignore = []
if importlib.util.find_spec("lm_eval") is None:
    collect_ignore.append("src/hf_softthink/lm_eval_harness.py")
