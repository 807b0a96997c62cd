"""SoftGRPOTrainer's soft rollouts on transformers' static cache and compiled forward, when the config asks.

`cache_implementation="static"` (a GRPOConfig field) puts the rollouts on the static cache; a `compile_config` in
`generation_kwargs` lifts TRL's `disable_compile=True` for soft rollouts, so the decode steps run transformers'
compiled forward (docs/design.md §8). Pinned here: the rollouts (completion ids and every stored soft tensor)
equal the dynamic-cache rollouts token for token, in float64, where float32 rounding of attention over the
static cache's masked length cannot part them; the compiled forward really runs; and a compiled training run
traces its graphs in the first rollout, then none.
"""

import math

import pytest
import torch
from test_trainer import TOKENIZER, make_args, make_trainer, prompts
from transformers import CompileConfig, TrainerCallback

from hf_softthink.models import tiny_model


def recording_compile_config(graphs: list, backend: str | None = None) -> CompileConfig:
    """A `CompileConfig` that compiles on CPU too; by default with a backend that records each traced graph and
    runs it eagerly (fast), else with `backend` (e.g. inductor)."""

    def record(graph_module, example_inputs):
        graphs.append(graph_module)
        return graph_module.forward

    config = CompileConfig(backend=backend or record, fullgraph=True, mode=None if backend is None else "default")
    config._compile_all_devices = True  # transformers compiles by itself only on GPUs
    return config


def compiled_call_of(trainer):
    model = trainer.accelerator.unwrap_model(trainer.model)
    model = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(model, "_compiled_call", None)


def prompt_ids(n: int = 4) -> list[list[int]]:
    """Chat prompts of different lengths (so the batch is left-padded), each repeated as TRL groups them."""
    texts = [TOKENIZER.apply_chat_template(p, add_generation_prompt=True, tokenize=False) for p in prompts(n, 1)["prompt"]]
    rows = TOKENIZER(texts)["input_ids"]
    return [ids for ids in rows for _ in range(2)]


def rollout(trainer, seed: int = 0):
    """One soft rollout through the trainer's seam: the completions and the soft tensors it stored."""
    torch.manual_seed(seed)
    completions, _ = trainer._generate_single_turn(prompt_ids(), None, None, 2)
    return completions, {key: value.clone() for key, value in trainer._rollout.items()}


def float64_trainer(tmp_path, mode: str, **overrides):
    return make_trainer(make_args(tmp_path, mode, **overrides), lora=False, model=tiny_model("llama", seed=0).double())


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("mode", ["gumbel", "gaussian"])  # Concrete weights; Gaussian embedding noise
@pytest.mark.parametrize("engine", ["static", "compiled"])
def test_static_and_compiled_rollouts_equal_dynamic_cache_rollouts(tmp_path, mode, engine):
    graphs = []
    reference = rollout(float64_trainer(tmp_path / "dynamic", mode))
    kwargs = {"cache_implementation": "static"}
    if engine == "compiled":
        kwargs["generation_kwargs"] = {"compile_config": recording_compile_config(graphs)}
    trainer = float64_trainer(tmp_path / engine, mode, **kwargs)
    completions, soft = rollout(trainer)
    assert completions == reference[0]
    assert soft.keys() == reference[1].keys()
    for key, value in soft.items():
        assert torch.equal(value, reference[1][key]), key
    assert soft["soft_mask"].any()
    if engine == "compiled":  # the decode steps ran the compiled forward
        assert graphs and compiled_call_of(trainer) is not None
    else:  # TRL's disable_compile stands when no compile_config asks
        assert compiled_call_of(trainer) is None


def test_rollouts_are_not_compiled_on_cpu_without_the_flag_and_never_in_hard_mode(tmp_path):
    """On CPU transformers compiles only a `CompileConfig` flagged `_compile_all_devices`; and
    `soft_rollout="hard"` is `GRPOTrainer` exactly, whose generation config keeps `disable_compile=True`."""
    unflagged = float64_trainer(tmp_path / "unflagged", "gumbel", cache_implementation="static",
                                generation_kwargs={"compile_config": CompileConfig(fullgraph=True)})
    rollout(unflagged)
    assert compiled_call_of(unflagged) is None

    graphs = []
    hard = make_trainer(make_args(tmp_path / "hard", "hard", cache_implementation="static",
                                  generation_kwargs={"compile_config": recording_compile_config(graphs)}))
    hard.train()
    assert hard.generation_config.disable_compile and not graphs


class GraphCount(TrainerCallback):
    def __init__(self, graphs: list):
        self.graphs, self.per_step = graphs, []

    def on_step_end(self, *args, **kwargs):
        self.per_step.append(len(self.graphs))


def test_compiled_rollouts_train_like_eager_ones_and_stop_tracing_after_the_first_rollout(tmp_path):
    """A LoRA training run with compiled rollouts logs the same losses as one with dynamic-cache rollouts (the
    tiny float32 model's traces do not part over these few steps), and every graph is traced in the first
    step: prompts of other lengths, weight updates and TRL's gradient-checkpointing toggles around each
    rollout retrace nothing. (With gradient checkpointing the first rollout traces two graphs: PEFT's
    input-grad hook makes token steps' embeddings require grad while concept steps' do not.)"""
    eager = make_trainer(make_args(tmp_path / "eager", "gumbel", max_steps=4), dataset=prompts(16, seed=3))
    eager.train()
    graphs = []
    count = GraphCount(graphs)
    compiled = make_trainer(
        make_args(tmp_path / "compiled", "gumbel", max_steps=4, cache_implementation="static",
                  generation_kwargs={"compile_config": recording_compile_config(graphs)}),
        dataset=prompts(16, seed=3), callbacks=[count],
    )  # fmt: skip
    compiled.train()
    losses = [[h["loss"] for h in t.state.log_history if "loss" in h] for t in (eager, compiled)]
    assert losses[0] == losses[1] and all(math.isfinite(x) for x in losses[1])
    assert count.per_step[0] >= 1 and len(set(count.per_step)) == 1, count.per_step


@pytest.mark.slow
def test_inductor_compiled_rollouts_equal_dynamic_cache_rollouts_in_float64(tmp_path):
    """The real compiler (inductor) on CPU, float64: the same tokens and soft tensors as the dynamic cache."""
    reference = rollout(float64_trainer(tmp_path / "dynamic", "gumbel"))
    trainer = float64_trainer(tmp_path / "inductor", "gumbel", cache_implementation="static",
                              generation_kwargs={"compile_config": recording_compile_config([], "inductor")})
    completions, soft = rollout(trainer)
    assert compiled_call_of(trainer) is not None
    assert completions == reference[0]
    # inductor fuses the float64 arithmetic differently; the decoder's weights come from float32 logits, where
    # that can move a value by an ulp (measured: at most 2e-7 relative)
    for key, value in soft.items():
        if value.is_floating_point():
            torch.testing.assert_close(value, reference[1][key], rtol=1e-6, atol=1e-6)
        else:
            assert torch.equal(value, reference[1][key]), key
