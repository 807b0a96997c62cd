"""Soft-thinking adapters on disk and on the Hub: the soft config in `generation_config.json`, a model card.

A folder saved by `SoftGRPOTrainer` (`save_model`, every checkpoint, `push_to_hub`) holds, next to PEFT's
`adapter_config.json` / `adapter_model.safetensors` (or the full model) and the tokenizer:

* `generation_config.json` with a `soft_thinking` entry: the soft-thinking decoder config of the rollouts;
* `README.md`: a model card in TRL's layout: the base model, the recipe, the soft rollout mode, the datasets,
  every training setting, the reward curve and the final metrics of the run so far, the framework versions,
  the citations, and how to generate;
* `reward_curve.png`: the mean reward per training step, from the trainer's log history (the card shows it).

PEFT does not read a generation config from an adapter folder (`PeftModel.from_pretrained` and
`AutoPeftModelForCausalLM` take the base model's), so `load_soft_adapter` does it: it loads base model and
adapter, puts the saved `soft_thinking` config into the base model's generation config and enables soft
thinking, so that `model.generate(**inputs, soft_thinking=True)` decodes as the rollouts did.

Example:

```python
>>> from hf_softthink.hub import load_soft_adapter  # doctest: +SKIP
>>> model, tokenizer = load_soft_adapter("out/checkpoint-100", base_model="smollm2-135m")  # doctest: +SKIP
>>> out = model.generate(**tokenizer("2 + 3 =", return_tensors="pt"), soft_thinking=True)  # doctest: +SKIP
```
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets
from huggingface_hub import ModelCard, ModelCardData
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

from .checks import check_model_path
from .config import SoftThinkingConfig
from .generation import enable_soft_thinking

__all__ = [
    "PACKAGED_HUB_IDS",
    "load_soft_adapter",
    "load_soft_thinking_config",
    "plot_reward_curve",
    "reward_summary",
    "save_soft_thinking_config",
    "save_soft_thinking_files",
    "soft_model_card",
    "training_settings",
    "write_model_card",
]

#: Hub ids of the models `hf_softthink.models.load_model` ships under a short name. A folder trained from a
#: packaged model records the Hub id (model card `base_model`, the adapter's `base_model_name_or_path`), so it
#: names its base anywhere; `load_soft_adapter` maps these ids back to the packaged models, offline.
PACKAGED_HUB_IDS = {
    "smollm2-135m": "HuggingFaceTB/SmolLM2-135M-Instruct",
    "gemma3-270m": "google/gemma-3-270m",
}
_PACKAGED_NAMES = {hub_id: name for name, hub_id in PACKAGED_HUB_IDS.items()}

_ROLLOUT_DESCRIPTIONS = {
    "hard": "ordinary token sampling (plain GRPO)",
    "gaussian": "concept tokens with Gaussian noise on the mixed input embedding (Soft Tokens, Hard Truths, "
    "arXiv:2509.19170)",
    "fuzzy": "fuzzy tokens: thinking temperature 1e-4 plus Gaussian embedding noise (arXiv:2509.19170)",
    "gumbel": "concept tokens with Gumbel-Softmax weights over the top-K tokens (SofT-GRPO, "
    "arXiv:2511.06411)",
    "dirichlet": "concept tokens with Dirichlet-sampled weights (arXiv:2508.03440)",
    "logistic_normal": "concept tokens with Gaussian noise on the top-K log-weights (logistic-normal weights, "
    "the Gaussian counterpart of Gumbel-Softmax)",
}

#: BibTeX of the works a trained model rests on (the papers are those of CITATION.cff): (key, entry)
_BIBTEX = {
    "hf_softthink": """@software{hf_softthink,
  title   = {{hf_softthink: soft thinking for HuggingFace transformers, TRL and PEFT}},
  author  = {{hf_softthink developers}},
  license = {Apache-2.0},
  version = {VERSION}
}""",
    "soft_thinking": """@article{zhang2025softthinking,
  title   = {{Soft Thinking: Unlocking the Reasoning Potential of LLMs in Continuous Concept Space}},
  author  = {Zhang, Zhen and others},
  journal = {arXiv preprint arXiv:2505.15778},
  year    = {2025}
}""",
    "stht": """@article{butt2025softtokens,
  title   = {{Soft Tokens, Hard Truths}},
  author  = {Butt, Natasha and others},
  journal = {arXiv preprint arXiv:2509.19170},
  year    = {2025}
}""",
    "softgrpo": """@article{softgrpo2025,
  title   = {{SofT-GRPO: Surpassing Discrete-Token LLM Reinforcement Learning via Gumbel-Reparameterized
             Soft-Thinking Policy Optimization}},
  journal = {arXiv preprint arXiv:2511.06411},
  year    = {2025}
}""",
    "concrete": """@inproceedings{maddison2017concrete,
  title     = {{The Concrete Distribution: A Continuous Relaxation of Discrete Random Variables}},
  author    = {Maddison, Chris J. and Mnih, Andriy and Teh, Yee Whye},
  booktitle = {International Conference on Learning Representations},
  year      = {2017},
  eprint    = {arXiv:1611.00712}
}""",
    "dirichlet": """@article{singlethreaded2025,
  title   = {{LLMs are Single-threaded Reasoners: Demystifying the Working Mechanism of Soft Thinking}},
  journal = {arXiv preprint arXiv:2508.03440},
  year    = {2025}
}""",
    "grpo": """@article{shao2024deepseekmath,
  title   = {{DeepSeekMath: Pushing the Limits of Mathematical Reasoning in Open Language Models}},
  author  = {Shao, Zhihong and Wang, Peiyi and Zhu, Qihao and Xu, Runxin and Song, Junxiao and Zhang, Mingchuan
             and Li, Y. K. and Wu, Y. and Guo, Daya},
  journal = {arXiv preprint arXiv:2402.03300},
  year    = {2024}
}""",
    "trl": """@software{vonwerra2020trl,
  title   = {{TRL: Transformers Reinforcement Learning}},
  author  = {von Werra, Leandro and Belkada, Younes and Tunstall, Lewis and Beeching, Edward and Thrush, Tristan
             and Lambert, Nathan and Huang, Shengyi and Rasul, Kashif and Gallou{\'e}dec, Quentin},
  license = {Apache-2.0},
  url     = {https://github.com/huggingface/trl},
  year    = {2020}
}""",
}
#: what each rollout mode is cited for, besides hf_softthink, Soft Thinking, GRPO and TRL
_ROLLOUT_CITATIONS = {
    "hard": (),
    "gaussian": ("stht",),
    "fuzzy": ("stht",),
    "gumbel": ("softgrpo", "concrete"),
    "dirichlet": ("dirichlet",),
}
#: the settings a card's table shows first (the rest are in its full list)
_KEY_SETTINGS = (
    "soft_rollout",
    "soft_density",
    "learning_rate",
    "lr_scheduler_type",
    "max_steps",
    "num_train_epochs",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "num_generations",
    "max_completion_length",
    "temperature",
    "top_p",
    "beta",
    "loss_type",
    "num_iterations",
    "epsilon",
    "scale_rewards",
    "seed",
    "bf16",
)
#: the metrics a card's table shows (the rest are in its full list), in this order; also each reward's mean
_KEY_METRICS = (
    "reward",
    "reward_std",
    "frac_reward_zero_std",
    "completions/mean_length",
    "soft/frac_soft_steps",
    "soft/think_end_rate",
    "loss",
    "grad_norm",
    "kl",
    "entropy",
    "train_loss",
    "train_runtime",
)
#: settings left out of a card: this machine's paths (the card is published) and secrets
_LOCAL_SETTINGS = ("output_dir", "logging_dir", "resume_from_checkpoint", "hub_token", "push_to_hub_token")
#: the packages whose versions a card records, as TRL's cards do (name shown, distribution)
_FRAMEWORKS = (
    ("hf_softthink", "hf-softthink"),
    ("TRL", "trl"),
    ("Transformers", "transformers"),
    ("PEFT", "peft"),
    ("PyTorch", "torch"),
    ("Datasets", "datasets"),
    ("Tokenizers", "tokenizers"),
)
#: the file, beside the card, of the reward curve
REWARD_CURVE_FILE = "reward_curve.png"


# ------------------------------------------------------------------------------------------------ config
def save_soft_thinking_config(
    output_dir: str | os.PathLike, config: SoftThinkingConfig | dict | None, generation_config: Any = None
) -> Path:
    """Write `output_dir/generation_config.json` holding `config` as its `soft_thinking` entry.

    `generation_config` (e.g. the base model's) supplies the other generation settings (eos / pad ids,
    ...); it is copied, not changed. Returns the path written.
    """
    generation = copy.deepcopy(generation_config) if generation_config is not None else GenerationConfig()
    soft = SoftThinkingConfig.coerce(config) if config is not None else None
    if soft is not None:
        soft.save_to_generation_config(generation)
    else:
        generation._from_model_config = False
    os.makedirs(output_dir, exist_ok=True)
    generation.save_pretrained(output_dir)
    return Path(output_dir) / "generation_config.json"


def load_soft_thinking_config(path: str | os.PathLike) -> SoftThinkingConfig | None:
    """The `soft_thinking` config saved in `path/generation_config.json` (None if there is none).

    Raises `ValueError` naming the file when it is not a JSON object or its `soft_thinking` entry is invalid.
    """
    file = Path(path) / "generation_config.json"
    if not file.is_file():
        return None
    return SoftThinkingConfig.from_saved(_read_json_object(file).get("soft_thinking"), str(file))


def _read_json_object(file: Path) -> dict[str, Any]:
    """The JSON object in `file`; a `ValueError` naming the file if it is not one (damaged, cut short, ...)."""
    damaged = (
        "the file is damaged or was cut short: copy it again from the saved folder, or save the folder again"
    )
    try:
        value = json.loads(file.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as error:
        raise ValueError(f"{file} is not UTF-8 text (byte {error.start}): {damaged}.") from None
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{file} is not valid JSON ({error.msg}: line {error.lineno}, column {error.colno}): {damaged}."
        ) from None
    if not isinstance(value, dict):
        kind = {list: "a JSON array", str: "a JSON string", type(None): "null"}.get(type(value), "a JSON value")
        raise ValueError(f"{file} holds {kind}, not a JSON object: {damaged}.")
    return value


# ------------------------------------------------------------------------------------------------ card
def _packaged_name(name_or_path: str | None) -> str | None:
    """The short name of a packaged model (`"smollm2-135m"`) given it or its converted cache folder."""
    if not name_or_path:
        return None
    name = str(name_or_path).rstrip("/")
    if name in PACKAGED_HUB_IDS:
        return name
    return Path(name).name if Path(name).name in PACKAGED_HUB_IDS and os.path.isdir(name) else None


def _hub_id(name_or_path: str | None) -> str | None:
    """A Hub id for the card's `base_model` metadata: packaged models map to theirs; local paths give None."""
    if not name_or_path:
        return None
    name = str(name_or_path).rstrip("/")
    if name in PACKAGED_HUB_IDS:
        return PACKAGED_HUB_IDS[name]
    if Path(name).name in PACKAGED_HUB_IDS and os.path.isdir(name):
        return PACKAGED_HUB_IDS[Path(name).name]
    if os.path.isdir(name) or name.startswith((".", "/", "~")):
        return None
    return name if name.count("/") == 1 else None


def soft_model_card(
    *,
    base_model: str | None,
    soft_rollout: str,
    soft_thinking: SoftThinkingConfig | dict | None,
    datasets: list[str] | None = None,
    model_name: str | None = None,
    soft_density: str = "exact",
    repo_id: str | None = None,
    tags: list[str] | None = None,
    adapter: bool = True,
    recipe: str | None = None,
    settings: Mapping[str, Any] | None = None,
    log_history: Sequence[Mapping[str, Any]] | None = None,
    reward_curve: str | None = None,
    run_url: str | None = None,
) -> ModelCard:
    """A model card for a soft-thinking model or adapter trained with `SoftGRPOTrainer`, in TRL's layout.

    Args:
        base_model: the base model's Hub id or local path (packaged short names map to their Hub ids).
        soft_rollout: the `SoftGRPOConfig.soft_rollout` mode.
        soft_thinking: the decoder config of the rollouts (saved in `generation_config.json`).
        datasets: names of the training datasets (Hub ids become card metadata).
        model_name: the title (default: the repo name or "soft-thinking adapter").
        soft_density: `SoftGRPOConfig.soft_density`.
        repo_id: where the folder lives (Hub id or path), used in the usage snippet.
        tags: extra metadata tags.
        adapter: the folder holds a PEFT adapter (else a full model).
        recipe: the name of the `SoftGRPOConfig` preset the run used (None: none).
        settings: every training setting, name -> value (`training_settings(trainer)`); the key ones are
            tabled, all of them listed.
        log_history: the trainer's `state.log_history`: the reward summary and the final metrics.
        reward_curve: file name, beside the card, of the reward-curve image (`plot_reward_curve`).
        run_url: the experiment tracker's page of the run (Weights & Biases).
    """
    soft = SoftThinkingConfig.coerce(soft_thinking) if soft_thinking is not None else None
    hub_base = _hub_id(base_model)
    shown_base = hub_base or base_model or "unknown"
    datasets = list(datasets or [])
    title = model_name or (repo_id.rstrip("/").split("/")[-1] if repo_id else "soft-thinking adapter")
    where = repo_id or "path/to/this/folder"
    data = ModelCardData(
        base_model=hub_base,
        library_name="peft" if adapter else "transformers",
        pipeline_tag="text-generation",
        model_name=title,
        tags=sorted(
            {"hf_softthink", "soft-thinking", "trl", "grpo", f"soft-rollout-{soft_rollout}", *(tags or [])}
        ),
        datasets=[d for d in datasets if d.count("/") == 1] or None,
    )
    config_json = json.dumps(soft.to_dict(), indent=2, sort_keys=True) if soft is not None else "null"
    packaged = _packaged_name(base_model)
    loadable = packaged or hub_base or base_model  # what `load_soft_adapter(base_model=...)` accepts
    base_arg = f'"{loadable}"' if loadable else "None  # base model id or path"
    dataset_text = ", ".join(datasets) if datasets else "not recorded"
    density = "" if soft_rollout == "hard" else f"\n- **Soft-step log-density:** `{soft_density}`"
    recipe_text = (
        f"`SoftGRPOConfig.{recipe}()`, with the settings below" if recipe else "none: the settings below"
    )
    loader = (
        f'model, tokenizer = load_soft_adapter("{where}", base_model={base_arg})'
        if adapter
        else f'model, tokenizer = load_soft_adapter("{where}")  # a full model folder works too'
    )
    tracker = f"\n[Visualize this run in Weights & Biases]({run_url})\n" if run_url else ""
    content = f"""---
{data.to_yaml()}
---

# {title}

{"A LoRA adapter" if adapter else "A model"} trained with `SoftGRPOTrainer` from `hf_softthink` (GRPO, via
TRL, with a soft chain of thought): while thinking, the model feeds back *concept tokens*
(probability-weighted mixtures of token embeddings) instead of sampled tokens, and answers with ordinary
tokens after the think-end marker.

## How to generate with soft thinking

`generate(..., soft_thinking=True)` uses the config saved with this folder. PEFT does not load a generation
config from an adapter folder, so load it with `hf_softthink.hub.load_soft_adapter`:

```python
from hf_softthink.hub import load_soft_adapter

{loader}
messages = [{{"role": "user", "content": "What is 3 + 4?"}}]
inputs = tokenizer.apply_chat_template(
    messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
)
out = model.generate(**inputs, soft_thinking=True, max_new_tokens=256, return_dict_in_generate=True)
print(tokenizer.decode(out.sequences[0, inputs["input_ids"].shape[1]:]))  # top-1 trace, think-end, answer
```

Or by hand: load the adapter with PEFT, then
`enable_soft_thinking(model, tokenizer, config=hf_softthink.hub.load_soft_thinking_config(folder))`.
Passing `soft_thinking=SoftThinkingConfig(...)` to `generate` overrides the saved config.

## Training procedure
{tracker}
- **Base model:** {shown_base}
- **Recipe:** {recipe_text}
- **Soft rollout mode:** `{soft_rollout}` -- {_ROLLOUT_DESCRIPTIONS.get(soft_rollout, soft_rollout)}{density}
- **Datasets:** {dataset_text}
- **Soft-thinking decoder config** (saved in `generation_config.json` as `soft_thinking`):

```json
{config_json}
```
{_results_section(log_history, reward_curve)}{_settings_section(settings)}
### Framework versions

{_framework_versions()}

## Citations

{_citations(soft_rollout)}
"""
    return ModelCard(content)


def reward_summary(rewards: Sequence[float]) -> str:
    """How the mean reward moved: its mean over the first and over the last logged steps (5 each, or half the
    steps when there are fewer than 10).

    Example:
        >>> reward_summary([0.25, 0.5, 0.5, 0.75, 1.0, 1.0])
        'first 3 steps 0.42 → last 3 steps 0.92 (6 steps)'
        >>> reward_summary([0.5])
        'step 1: 0.50 (1 step)'
    """
    rewards = [float(r) for r in rewards]
    if not rewards:
        return "no reward logged"
    if len(rewards) == 1:
        return f"step 1: {rewards[0]:.2f} (1 step)"
    window = max(1, min(5, len(rewards) // 2))
    first, last = sum(rewards[:window]) / window, sum(rewards[-window:]) / window
    steps = "step" if window == 1 else f"{window} steps"
    return f"first {steps} {first:.2f} → last {steps} {last:.2f} ({len(rewards)} steps)"


def _reward_steps(log_history: Sequence[Mapping[str, Any]] | None) -> tuple[list[int], list[float]]:
    """The (step, mean reward) of each logged training step."""
    rows = [h for h in (log_history or []) if isinstance(h.get("reward"), (int, float))]
    return [int(h.get("step", i + 1)) for i, h in enumerate(rows)], [float(h["reward"]) for h in rows]


def plot_reward_curve(
    log_history: Sequence[Mapping[str, Any]], path: str | os.PathLike, title: str | None = None
) -> Path | None:
    """Write a PNG of the mean reward per logged training step with a 5-step running mean; None (and no file)
    when no step logged a reward.

    Args:
        log_history: a trainer's `state.log_history` (entries with a `reward` are plotted).
        path: the PNG to write.
        title: the plot's title.
    """
    from matplotlib.figure import Figure  # no pyplot: no backend, no global state

    steps, rewards = _reward_steps(log_history)
    if not steps:
        return None
    window = min(5, len(rewards))
    running = [sum(rewards[max(0, i - window + 1) : i + 1]) / len(rewards[max(0, i - window + 1) : i + 1])
               for i in range(len(rewards))]
    figure = Figure(figsize=(6, 3.5))
    axis = figure.subplots()
    axis.plot(steps, rewards, "o", alpha=0.45, label="mean reward of the step's completions")
    axis.plot(steps, running, "-", label=f"running mean ({window} steps)")
    axis.set_xlabel("training step")
    axis.set_ylabel("reward")
    low, high = min(0.0, *rewards), max(1.0, *rewards)
    axis.set_ylim(low - 0.05 * (high - low), high + 0.05 * (high - low))
    axis.set_title(title or f"Reward: {reward_summary(rewards)}", fontsize=10)
    axis.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path


def _number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"`{value}`"
    if isinstance(value, int) or (float(value).is_integer() and abs(value) < 1e15):
        return str(int(value))
    return f"{value:.4g}"


def _results_section(log_history: Sequence[Mapping[str, Any]] | None, reward_curve: str | None) -> str:
    """The card's reward curve and final metrics (empty before any step was logged)."""
    steps, rewards = _reward_steps(log_history)
    if not steps:
        return ""
    last = next(h for h in reversed(log_history or []) if isinstance(h.get("reward"), (int, float)))
    summary = next((h for h in reversed(log_history or []) if "train_runtime" in h), {})
    metrics = {key: value for key, value in {**last, **summary}.items() if key not in ("step", "epoch")}
    key_rows = [key for key in metrics if key in _KEY_METRICS or key.startswith("rewards/") and key.endswith("/mean")]
    lines = ["", "### Reward", ""]
    if reward_curve:
        lines += [f"![Mean reward per training step]({reward_curve})", ""]
    lines += [
        f"Mean reward of each step's completions: {reward_summary(rewards)}. A step's reward is the mean over "
        "its few prompt groups, so single steps are noisy: compare the first and the last steps.",
        "",
        f"### Final metrics (step {last.get('step', steps[-1])} of the run)",
        "",
        "| metric | value |",
        "|---|---:|",
        *(f"| {key} | {_number(metrics[key])} |" for key in sorted(key_rows, key=_metric_order)),
        "",
        f"<details><summary>Every metric logged at that step ({len(metrics)})</summary>",
        "",
        "| metric | value |",
        "|---|---:|",
        *(f"| {key} | {_number(value)} |" for key, value in metrics.items()),
        "",
        "</details>",
    ]
    return "\n".join(lines) + "\n"


def _metric_order(key: str) -> int:
    return _KEY_METRICS.index(key) if key in _KEY_METRICS else _KEY_METRICS.index("reward") + 1


def _settings_section(settings: Mapping[str, Any] | None) -> str:
    """The card's training settings: the key ones in a table, every one in a collapsed JSON list."""
    if not settings:
        return ""
    shown = {key: value for key, value in settings.items() if key not in _LOCAL_SETTINGS}
    key_rows = [key for key in ("model", "LoRA", "quantization", *_KEY_SETTINGS) if key in shown]
    table = "\n".join(f"| {key} | {_number(shown[key])} |" for key in key_rows)
    full = json.dumps(shown, indent=1, sort_keys=True, default=str)
    return f"""
### Training settings

| setting | value |
|---|---|
{table}

<details><summary>Every training setting ({len(shown)}; SoftGRPOConfig and the model)</summary>

```json
{full}
```

</details>
"""


def _framework_versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    lines = []
    for shown, distribution in _FRAMEWORKS:
        try:
            lines.append(f"- {shown}: {version(distribution)}")
        except PackageNotFoundError:
            if distribution == "hf-softthink":  # run from a source tree that is not installed
                from ._version import __version__

                lines.append(f"- {shown}: {__version__}")
    return "\n".join(lines)


def _citations(soft_rollout: str) -> str:
    from ._version import __version__

    keys = ("hf_softthink", "soft_thinking", *_ROLLOUT_CITATIONS.get(soft_rollout, ()), "grpo", "trl")
    names = {"hf_softthink": "hf_softthink", "soft_thinking": "Soft Thinking", "stht": "Soft Tokens, Hard Truths",
             "softgrpo": "SofT-GRPO", "concrete": "the Concrete distribution (the Gumbel-Softmax density)",
             "dirichlet": "the Dirichlet soft-thinking study", "grpo": "GRPO", "trl": "TRL"}
    blocks = [
        f"Cite {names[key]} as:\n\n```bibtex\n{_BIBTEX[key].replace('{VERSION}', __version__)}\n```"
        for key in keys
    ]
    return "\n\n".join(blocks)


def _dataset_names(trainer: Any, dataset_name: str | None) -> list[str]:
    names = [dataset_name] if dataset_name else []
    dataset = getattr(trainer, "train_dataset", None)
    info = getattr(dataset, "info", None)
    for candidate in (getattr(info, "dataset_name", None), getattr(info, "builder_name", None)):
        if candidate and candidate not in names and candidate != "generator":
            names.append(candidate)
    column_names = getattr(dataset, "column_names", None) or []
    if isinstance(dataset, datasets.Dataset) and "task" in column_names and len(dataset) > 0:
        tasks = sorted({t for t in dataset.unique("task") if t})  # reasoning-gym task names
        if tasks:
            names.append(f"reasoning-gym ({', '.join(tasks)})")
    return names


def _base_model_name(trainer: Any) -> str | None:
    model = trainer.accelerator.unwrap_model(trainer.model)
    config = getattr(model, "config", None)
    return getattr(config, "_name_or_path", None) or None


def _is_adapter(trainer: Any) -> bool:
    from accelerate.utils import is_peft_model

    return is_peft_model(trainer.accelerator.unwrap_model(trainer.model))


def training_settings(trainer: Any) -> dict[str, Any]:
    """Every setting of a trainer's run, for its model card: the `SoftGRPOConfig` (`to_dict()`, secrets masked as
    transformers does) plus the model's LoRA and quantization settings and the number of processes."""
    settings: dict[str, Any] = dict(trainer.args.to_dict())
    model = trainer.accelerator.unwrap_model(trainer.model)
    peft_config = getattr(model, "peft_config", None)
    if isinstance(peft_config, Mapping) and peft_config:
        lora = next(iter(peft_config.values()))
        targets = lora.target_modules
        if isinstance(targets, (set, list, tuple)):  # PEFT expands "all-linear" into module names
            targets = sorted({str(name).rsplit(".", 1)[-1] for name in targets})
        settings["LoRA"] = (
            f"r={getattr(lora, 'r', '?')}, alpha={getattr(lora, 'lora_alpha', '?')}, "
            f"dropout={getattr(lora, 'lora_dropout', '?')}, target_modules={targets}"
        )
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    quantization = getattr(getattr(base, "config", None), "quantization_config", None)
    if quantization is not None:
        values = quantization if isinstance(quantization, Mapping) else quantization.to_dict()
        bits = "4-bit" if values.get("load_in_4bit") else "8-bit" if values.get("load_in_8bit") else "quantized"
        kind = values.get("bnb_4bit_quant_type") if values.get("load_in_4bit") else values.get("quant_method")
        settings["quantization"] = f"{bits} {kind or ''}".strip()
    settings["num_processes"] = trainer.accelerator.num_processes
    return settings


def _wandb_run_url() -> str | None:
    """The page of the active Weights & Biases run (None without one), as TRL's cards link it."""
    import sys

    run = getattr(sys.modules.get("wandb"), "run", None)  # a run exists only where wandb was imported
    return getattr(run, "url", None) if run is not None else None


def write_model_card(
    trainer: Any,
    output_dir: str | os.PathLike,
    model_name: str | None = None,
    dataset_name: str | None = None,
    tags: Any = None,
) -> Path:
    """Write `output_dir/README.md` and `output_dir/reward_curve.png` for a `SoftGRPOTrainer`, keeping the
    metadata PEFT put in the card.

    The card records the run so far (`trainer.state.log_history`): at a checkpoint, its steps; at the end,
    the whole run.
    """
    args = trainer.args
    tags = [tags] if isinstance(tags, str) else list(tags or [])
    repo_id = getattr(trainer, "hub_model_id", None) or args.hub_model_id
    log_history = list(trainer.state.log_history)
    os.makedirs(output_dir, exist_ok=True)
    curve = plot_reward_curve(log_history, Path(output_dir) / REWARD_CURVE_FILE)
    card = soft_model_card(
        base_model=_base_model_name(trainer),
        soft_rollout=args.soft_rollout,
        soft_thinking=trainer.rollout_soft_config,
        datasets=_dataset_names(trainer, dataset_name),
        model_name=model_name or (repo_id.split("/")[-1] if repo_id else Path(args.output_dir).name),
        soft_density=args.soft_density,
        repo_id=repo_id,
        tags=tags,
        adapter=_is_adapter(trainer),
        recipe=getattr(args, "recipe", None),
        settings=training_settings(trainer),
        log_history=log_history,
        reward_curve=curve.name if curve is not None else None,
        run_url=_wandb_run_url(),
    )
    path = Path(output_dir) / "README.md"
    if path.is_file():  # keep metadata PEFT wrote (e.g. peft version tags), ours wins on conflicts
        try:
            old = ModelCard.load(path).data.to_dict()
        except Exception:  # noqa: BLE001 - an unreadable card is simply replaced
            old = {}
        old = {k: v for k, v in old.items() if v not in (None, "", [])}
        new = card.data.to_dict()
        # PEFT tags "base_model:adapter:<name or path>": keep it only for a Hub id, never a local path
        old_tags = set()
        for tag in old.get("tags") or []:
            if str(tag).startswith("base_model:"):
                hub = _hub_id(str(tag).split(":", 2)[-1])
                tag = f"base_model:adapter:{hub}" if hub else None
            if tag:
                old_tags.add(tag)
        merged_tags = sorted(old_tags | set(new.get("tags") or []))
        card.data = ModelCardData(
            **{**old, **{k: v for k, v in new.items() if v is not None}, "tags": merged_tags}
        )
    card.save(path)
    return path


def record_hub_base_model(output_dir: str | os.PathLike) -> str | None:
    """Replace a packaged model's local cache path in `output_dir/adapter_config.json` by its Hub id.

    PEFT records `base_model_name_or_path` from the model's `_name_or_path`, which for a packaged model is the
    converted checkpoint in this machine's cache. The Hub id loads anywhere (and `load_soft_adapter` maps it
    back to the packaged model). Returns the id written, or None when nothing was changed.
    """
    path = Path(output_dir) / "adapter_config.json"
    if not path.is_file():
        return None
    values = json.loads(path.read_text(encoding="utf-8"))
    packaged = _packaged_name(values.get("base_model_name_or_path"))
    if packaged is None or values["base_model_name_or_path"] == PACKAGED_HUB_IDS[packaged]:
        return None
    values["base_model_name_or_path"] = PACKAGED_HUB_IDS[packaged]
    path.write_text(json.dumps(values, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return values["base_model_name_or_path"]


def save_soft_thinking_files(trainer: Any, output_dir: str | os.PathLike) -> None:
    """What `SoftGRPOTrainer._save` adds to a saved folder: `generation_config.json`, `README.md`, and the Hub
    id of a packaged base model in `adapter_config.json`."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    save_soft_thinking_config(
        output_dir, trainer.rollout_soft_config, getattr(base, "generation_config", None)
    )
    record_hub_base_model(output_dir)
    folder = Path(output_dir).name
    # the folder's name, unless the run has a Hub repo or this is a checkpoint (then the run's name)
    name = None if trainer.args.hub_model_id or folder.startswith("checkpoint-") else folder
    write_model_card(trainer, output_dir, model_name=name)


# ------------------------------------------------------------------------------------------------ loading
def load_soft_adapter(
    path: str | os.PathLike,
    base_model: Any = None,
    *,
    tokenizer: Any = None,
    is_trainable: bool = False,
    **from_pretrained_kwargs: Any,
):
    """Load a folder saved by `SoftGRPOTrainer` (adapter or model), ready for `generate(soft_thinking=True)`.

    Args:
        path: the saved folder (a local path; download a Hub repo with `huggingface_hub.snapshot_download`).
        base_model: for an adapter, the base model: a loaded model, a packaged short name
            (`"smollm2-135m"`), a Hub id or path; None uses the adapter's `base_model_name_or_path`. The Hub ids
            of the packaged models (`PACKAGED_HUB_IDS`, what folders trained from them record) load the
            packaged model, offline; pass a loaded model to use another copy.
        tokenizer: the tokenizer; by default the one saved in `path` (else the base model's).
        is_trainable: load the adapter trainable (PEFT's flag).
        **from_pretrained_kwargs: passed to the base model's `from_pretrained` (dtype, device_map,
            quantization_config, ...).

    Returns:
        `(model, tokenizer)`: a `PeftModel` (or the full model) with soft thinking enabled, whose base
        generation config holds the saved `soft_thinking` config.
    """
    path = Path(path)
    adapter_config = _check_saved_folder(path)
    soft = load_soft_thinking_config(path)
    if adapter_config is not None:
        from peft import PeftModel

        if base_model is None or isinstance(base_model, (str, os.PathLike)):
            if base_model is not None:
                name, what = os.fspath(base_model), "base_model"
            else:
                name = _recorded_base_model(path, adapter_config)
                what = f"The base model recorded in {path / _ADAPTER_CONFIG}"
            check_model_path(name, what)
            base_model, base_tokenizer = _load_base(name, **from_pretrained_kwargs)
        else:
            base_tokenizer = None
        model = PeftModel.from_pretrained(base_model, path, is_trainable=is_trainable)
    else:
        model = AutoModelForCausalLM.from_pretrained(path, **from_pretrained_kwargs)
        base_tokenizer = None
    if tokenizer is None:
        tokenizer = _load_tokenizer(path) or base_tokenizer
    enable_soft_thinking(model, tokenizer=tokenizer, config=soft)
    return model, tokenizer


_ADAPTER_CONFIG = "adapter_config.json"
_ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
_MODEL_WEIGHTS = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
# JSON files of a saved folder that the loaders read: each must be a JSON object
_JSON_FILES = (
    _ADAPTER_CONFIG,
    "config.json",
    "generation_config.json",
    "tokenizer_config.json",
    "tokenizer.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "model.safetensors.index.json",
)
_COPY_AGAIN = "copy the whole folder that save_model (or a checkpoint) wrote"


def _check_saved_folder(path: Path) -> dict[str, Any] | None:
    """Check a folder for `load_soft_adapter` before anything loads; return its adapter config (None: full model).

    Every missing or damaged file is named: the folder itself, an adapter's weights or config, a full model's
    config or weights (the shards of an index too), JSON files that do not hold a JSON object, safetensors
    files whose header or data is cut short.
    """
    if not path.exists():
        raise FileNotFoundError(
            f"load_soft_adapter: no such folder {str(path)!r}. Give the folder that SoftGRPOTrainer.save_model (or a "
            "checkpoint) wrote; download a Hub repo first with huggingface_hub.snapshot_download(repo_id)."
        )
    if not path.is_dir():
        raise NotADirectoryError(
            f"load_soft_adapter: {str(path)!r} is a file; give the folder that holds the adapter or model "
            f"({str(path.parent)!r}?)."
        )
    parsed = {name: _read_json_object(path / name) for name in _JSON_FILES if (path / name).is_file()}
    present = [name for name in (*_ADAPTER_WEIGHTS, *_MODEL_WEIGHTS) if (path / name).is_file()]
    if _ADAPTER_CONFIG in parsed:
        if not any(name in present for name in _ADAPTER_WEIGHTS):
            raise FileNotFoundError(
                f"{path} has {_ADAPTER_CONFIG} but no {_ADAPTER_WEIGHTS[0]} (nor {_ADAPTER_WEIGHTS[1]}): the "
                f"adapter's weights are missing; {_COPY_AGAIN}."
            )
    elif any(name in present for name in _ADAPTER_WEIGHTS):
        raise FileNotFoundError(
            f"{path} has adapter weights but no {_ADAPTER_CONFIG}, which PEFT needs to load them; {_COPY_AGAIN}."
        )
    elif "config.json" not in parsed:
        raise FileNotFoundError(
            f"{path} holds neither {_ADAPTER_CONFIG} (a PEFT adapter) nor config.json (a full model): give the "
            "folder that SoftGRPOTrainer.save_model (or a checkpoint) wrote."
        )
    elif not any(name in present for name in _MODEL_WEIGHTS):
        raise FileNotFoundError(
            f"{path} has config.json but no model weights ({', '.join(_MODEL_WEIGHTS)}); {_COPY_AGAIN}."
        )
    shards = set()
    for index in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if (path / index).is_file():
            weight_map = (parsed.get(index) or _read_json_object(path / index)).get("weight_map") or {}
            shards |= {str(shard) for shard in weight_map.values()}
    missing = sorted(shard for shard in shards if not (path / shard).is_file())
    if missing:
        raise FileNotFoundError(
            f"{path} lacks the weight shard(s) {missing} that its index lists; {_COPY_AGAIN}."
        )
    for file in sorted(path.glob("*.safetensors")):
        _check_safetensors(file)
    return parsed.get(_ADAPTER_CONFIG)


def _check_safetensors(file: Path) -> None:
    """Open the safetensors header of `file` (cheap: memory-mapped); a damaged or cut-short file is named."""
    from safetensors import safe_open

    try:
        with safe_open(str(file), framework="pt"):
            pass
    except Exception as error:  # noqa: BLE001 - safetensors raises its own error types
        raise ValueError(
            f"{file} cannot be read ({error}): the file is damaged or was cut short; {_COPY_AGAIN}."
        ) from None


def _recorded_base_model(path: Path, adapter_config: dict[str, Any]) -> str:
    """The base model that `adapter_config.json` records, or a `ValueError` saying to pass `base_model=`."""
    name = adapter_config.get("base_model_name_or_path")
    if not name or not isinstance(name, str):
        raise ValueError(
            f"{path / _ADAPTER_CONFIG} records no base model (base_model_name_or_path is {name!r}): pass "
            "base_model= (a packaged short name such as 'smollm2-135m', a Hub id, a local folder or a loaded model)."
        )
    return name


def _load_base(name: str, **kwargs: Any):
    from .models import PACKAGED_MODELS, load_model

    name = _PACKAGED_NAMES.get(name, name)
    if name in PACKAGED_MODELS:
        return load_model(name, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(name, **kwargs)
    return model, _load_tokenizer(name)


def _load_tokenizer(path: str | os.PathLike):
    try:
        return AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError):
        return None
