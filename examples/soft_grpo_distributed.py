"""SoftGRPO on several processes: a training script for `accelerate launch` (README, "Multi-GPU training").

    torchrun --nproc_per_node 2 examples/soft_grpo_distributed.py --max-steps 2         # 2 CPU processes (gloo)
    accelerate launch --config_file examples/accelerate/deepspeed_zero2.yaml --num_processes 8 \\
        examples/soft_grpo_distributed.py --model Qwen/Qwen3-1.7B --max-steps 200

Every process generates the soft rollouts of its share of the prompts with hf_softthink's decoder; TRL gathers
the rewards, normalises them per group across processes and gives each process the advantages of its own
rows, whose soft tensors travel with them (`tests/test_distributed.py` checks that a 2-process run equals one
process on the same rollouts). The model is passed to the trainer by path, so DeepSpeed ZeRO-3 can load it
sharded. Reward: reasoning-gym's scorer on single-digit additions, the task of the quickstart notebook.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from peft import LoraConfig
from transformers import AutoTokenizer

from hf_softthink import SoftThinkingConfig
from hf_softthink.data import reasoning_gym_dataset
from hf_softthink.models import PACKAGED_MODELS, packaged_model_path
from hf_softthink.rewards import reasoning_gym_reward
from hf_softthink.trainer import SOFT_ROLLOUTS, SoftGRPOConfig, SoftGRPOTrainer

ADDITIONS = {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1, "operators": ["+"],
             "allow_parentheses": False, "allow_negation": False}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m", help="packaged short name, Hub id or local folder")
    parser.add_argument("--soft-rollout", default="gumbel", choices=SOFT_ROLLOUTS)
    parser.add_argument("--max-steps", type=int, default=20)
    parser.add_argument("--per-device-batch", type=int, default=8, help="completions per process and step")
    parser.add_argument("--num-generations", type=int, default=8, help="completions per prompt (GRPO group)")
    parser.add_argument("--max-thinking-tokens", type=int, default=16)
    parser.add_argument("--max-completion-length", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument(
        "--full-finetune", action="store_true", help="train every weight (default: LoRA r=16)"
    )
    parser.add_argument("--output-dir", default="runs/soft_grpo_distributed")
    args = parser.parse_args(argv)

    # the trainer loads the model itself (by path): under ZeRO-3 it is then created sharded
    path = str(packaged_model_path(args.model)) if args.model in PACKAGED_MODELS else args.model
    tokenizer = AutoTokenizer.from_pretrained(path)
    dataset = reasoning_gym_dataset(
        "basic_arithmetic", size=512, seed=0, thinking_instruction=None, config=ADDITIONS
    )
    on_gpu = torch.cuda.is_available()
    config = SoftGRPOConfig(
        output_dir=args.output_dir,
        soft_rollout=args.soft_rollout,
        soft_thinking=SoftThinkingConfig(max_topk=10, max_thinking_tokens=args.max_thinking_tokens),
        num_generations=args.num_generations,
        per_device_train_batch_size=args.per_device_batch,
        max_completion_length=args.max_completion_length,
        temperature=0.7,
        learning_rate=args.learning_rate,
        lr_scheduler_type="constant",
        max_steps=args.max_steps,
        logging_steps=1,
        use_cpu=not on_gpu,
        bf16=on_gpu,
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
        seed=0,
    )
    trainer = SoftGRPOTrainer(
        model=path,
        reward_funcs=reasoning_gym_reward,
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=None
        if args.full_finetune
        else LoraConfig(r=16, lora_alpha=32, target_modules="all-linear"),
    )
    trainer.train()
    trainer.save_model(args.output_dir)  # every process takes part (sharded weights are gathered)
    if trainer.accelerator.is_main_process:
        rewards = [round(h["reward"], 3) for h in trainer.state.log_history if "reward" in h]
        print(
            f"{trainer.accelerator.num_processes} processes ({trainer.accelerator.distributed_type}); "
            f"mean reward per step: {rewards}; saved to {Path(args.output_dir).resolve()}"
        )


if __name__ == "__main__":
    main()
