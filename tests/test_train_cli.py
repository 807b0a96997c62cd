"""`hf-softthink train`: flags (TRL's spellings too), the --config file, trackers, CPU threads, a tiny end-to-end
run with its saved folder and checkpoints, Ctrl-C and resuming, data files, QLoRA, --push-to-hub."""

from __future__ import annotations

import json
import signal

import pytest
import torch
from huggingface_hub import ModelCard

from hf_softthink import threads as cpu_threads
from hf_softthink.cli import QUICKSTART_TASK_CONFIG, build_parser, main, train_config_from_arguments
from hf_softthink.models import tiny_model, tiny_tokenizer
from hf_softthink.trainer.callbacks import InterruptCallback, RewardProgressCallback


def parse(*argv: str):
    return build_parser().parse_args(["train", *argv])


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny") / "tiny-llama"
    tiny_model("llama", seed=0).save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    return path


def tiny_run(tiny_dir, out, *extra: str) -> list[str]:
    """The argv of a fast run on the tiny model (a few seconds)."""
    return ["train", "--model", str(tiny_dir), "--num-generations", "4", "--max-completion-length", "8",
            "--max-thinking-tokens", "3", "--num-problems", "8", "--output-dir", str(out), "--threads", "1",
            "--max-steps", "2", *extra]  # fmt: skip


# ---------------------------------------------------------------------------------------------- flags


def test_trl_spellings_are_the_same_flags():
    ours = parse("--model", "org/m", "--dataset", "d.jsonl", "--max-steps", "5", "--learning-rate", "0.001",
                 "--num-generations", "4", "--lora-r", "8", "--qlora", "--output-dir", "o", "--push-to-hub",
                 "--report-to", "none")  # fmt: skip
    trl = parse("--model_name_or_path", "org/m", "--dataset_name", "d.jsonl", "--max_steps", "5", "--learning_rate",
                "0.001", "--num_generations", "4", "--lora_r", "8", "--load_in_4bit", "--output_dir", "o",
                "--push_to_hub", "--report_to", "none")  # fmt: skip
    assert vars(ours) == vars(trl)
    assert (ours.model_name_or_path, ours.dataset_name, ours.load_in_4bit, ours.push_to_hub) == ("org/m", "d.jsonl",
                                                                                                True, True)


def test_rollout_choices_are_the_trainers():
    from hf_softthink.cli import SOFT_ROLLOUT_CHOICES
    from hf_softthink.trainer import SOFT_ROLLOUTS

    assert SOFT_ROLLOUT_CHOICES == SOFT_ROLLOUTS


def test_recipe_choices_are_the_presets():
    from hf_softthink.cli import RECIPE_CHOICES
    from hf_softthink.trainer.config import RECIPES

    assert RECIPE_CHOICES == RECIPES


def test_soft_density_choices_are_the_configs():
    from hf_softthink.cli import SOFT_DENSITY_CHOICES
    from hf_softthink.trainer.config import SOFT_DENSITIES

    assert SOFT_DENSITY_CHOICES == SOFT_DENSITIES


def test_gumbel_rollouts_default_to_the_gumbel_max_score_and_others_to_the_exact_density():
    """The command's gumbel default is the grid's best soft row on dev (gumbel_max); a rollout the score does not
    fit keeps its exact density, and a given --soft-density is kept as given."""
    assert train_config_from_arguments(parse("--output-dir", "o")).soft_density == "gumbel_max"
    for rollout in ("hard", "gaussian", "dirichlet"):
        assert train_config_from_arguments(parse("--soft-rollout", rollout, "--output-dir", "o")).soft_density == "exact"
    given = train_config_from_arguments(parse("--soft-density", "exact", "--output-dir", "o"))
    assert (given.soft_rollout, given.soft_density) == ("gumbel", "exact")
    with pytest.raises(ValueError, match="needs soft_rollout='gumbel'"):
        train_config_from_arguments(parse("--soft-rollout", "gaussian", "--soft-density", "gumbel_max", "--output-dir", "o"))
    # a recipe keeps its own score unless the flag is given
    assert train_config_from_arguments(parse("--recipe", "softgrpo", "--output-dir", "o")).soft_density == "soft_grpo"
    chosen = train_config_from_arguments(parse("--recipe", "softgrpo", "--soft-density", "gumbel_max", "--output-dir", "o"))
    assert chosen.soft_density == "gumbel_max"


def test_a_recipe_sets_the_algorithm_and_the_command_sizes_the_run():
    softgrpo = train_config_from_arguments(parse("--recipe", "softgrpo", "--max-steps", "7", "--output-dir", "o"))
    rollout = softgrpo.rollout_config()
    assert (softgrpo.recipe, softgrpo.soft_rollout, softgrpo.soft_density, softgrpo.learning_rate) == (
        "softgrpo", "gumbel", "soft_grpo", 1e-6)
    assert (rollout.max_topk, rollout.gumbel_tau, rollout.gumbel_noise_clamp) == (5, 0.1, (-1.5, 3.0))
    # the command's run size stays: steps given, completion length and thinking budget its defaults
    assert (softgrpo.max_steps, softgrpo.max_completion_length, rollout.max_thinking_tokens) == (7, 32, 16)
    fuzzy = train_config_from_arguments(parse("--recipe", "stht-fuzzy", "--learning-rate", "3e-5", "--output-dir", "o"))
    assert (fuzzy.recipe, fuzzy.soft_rollout, fuzzy.advantage_estimator, fuzzy.learning_rate) == (
        "stht-fuzzy", "fuzzy", "rloo", 3e-5)
    assert fuzzy.rollout_config().max_topk is None and fuzzy.max_steps == 30


def test_every_train_flag_is_in_the_readme():
    import argparse
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    (sub,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    flags = [a.option_strings[0] for a in sub.choices["train"]._actions if a.option_strings and a.dest != "help"]
    assert len(flags) > 30
    assert [flag for flag in flags if f"`{flag}" not in readme] == []


def test_flags_and_defaults_map_onto_the_soft_grpo_config():
    config = train_config_from_arguments(parse("--max-steps", "7", "--soft-rollout", "dirichlet", "--max-topk", "4",
                                               "--num-generations", "4", "--output-dir", "o"))  # fmt: skip
    assert (config.max_steps, config.soft_rollout, config.num_generations) == (7, "dirichlet", 4)
    assert config.per_device_train_batch_size == 4  # one prompt group per step
    assert config.rollout_config().max_topk == 4 and config.rollout_config().max_thinking_tokens == 16
    assert (config.learning_rate, config.max_completion_length, config.temperature) == (1e-4, 32, 0.7)
    assert config.use_cpu and config.logging_steps == 1 and config.save_strategy == "no" and config.report_to == []
    default_out = train_config_from_arguments(parse()).output_dir
    assert default_out == "smollm2-135m-SoftGRPO"
    saving = train_config_from_arguments(parse("--save-steps", "5", "--output-dir", "o"))
    assert (saving.save_strategy, saving.save_steps) == ("steps", 5)


def test_config_file_sets_flags_and_fields_and_command_line_flags_override_it(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(
        "model_name_or_path: org/model\n"
        "max-steps: 12\n"
        "learning_rate: 3e-5\n"  # YAML reads this as a string: converted like a flag value
        "load_in_4bit: true\n"
        "beta: 0.04\n"  # a SoftGRPOConfig field that is not a flag
        "soft_thinking: {cold_stop_entropy: 0.1, max_topk: 5}\n"
        "env: {HF_SOFTTHINK_TEST_ENV: 'set'}\n"
    )
    for argv in (["--max-steps", "3", "--config", str(path)], ["--config", str(path), "--max-steps", "3"]):
        args = parse(*argv, "--output-dir", "o", "--max-thinking-tokens", "6")
        assert args.max_steps == 3 and args.learning_rate == 3e-5 and args.model_name_or_path == "org/model"
        assert args.load_in_4bit is True
        config = train_config_from_arguments(args)
        assert config.beta == 0.04 and config.max_steps == 3
        soft = config.rollout_config()
        assert (soft.cold_stop_entropy, soft.max_topk, soft.max_thinking_tokens) == (0.1, 5, 6)
    import os

    assert os.environ.pop("HF_SOFTTHINK_TEST_ENV") == "set"


def test_the_example_config_file_is_the_quickstart():
    """examples/soft_grpo_train.yaml spells out the command's defaults: the same SoftGRPOConfig and task."""
    from pathlib import Path

    example = Path(__file__).resolve().parent.parent / "examples" / "soft_grpo_train.yaml"
    from_file = parse("--config", str(example))
    assert from_file.task_config == QUICKSTART_TASK_CONFIG
    defaults = parse("--output-dir", from_file.output_dir)
    assert train_config_from_arguments(from_file).to_dict() == train_config_from_arguments(defaults).to_dict()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("max_step: 3\n", "'max_step' is neither a flag of `hf-softthink train` nor a SoftGRPOConfig field. Did you "
                          "mean max_steps"),
        ("max_steps: many\n", "max_steps: invalid literal for int()"),
        ("soft_rollout: soft\n", "soft_rollout: 'soft' is not one of hard, gaussian, fuzzy, gumbel, dirichlet"),
        ("- a list\n", "must hold a YAML mapping of settings"),
        ("qlora: yes please\n", "qlora must be true or false"),
        ("env: [A, B]\n", "env must be a mapping of variable: value"),
    ],
)
def test_bad_config_files_are_named_errors(tmp_path, capsys, content, message):
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    with pytest.raises(SystemExit):
        parse("--config", str(path))
    err = " ".join(capsys.readouterr().err.split())
    assert "argument --config" in err and message in err


def test_soft_thinking_in_a_config_file_must_be_a_mapping(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("soft_thinking: gumbel\n")
    with pytest.raises(ValueError, match="soft_thinking must be a mapping of SoftThinkingConfig fields"):
        train_config_from_arguments(parse("--config", str(path), "--output-dir", "o"))


def test_missing_config_file_is_a_named_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        parse("--config", str(tmp_path / "missing.yaml"))
    assert "cannot read" in capsys.readouterr().err


def test_a_tracker_that_is_not_installed_is_a_clear_error_before_loading(capsys, monkeypatch):
    monkeypatch.setattr("transformers.integrations.get_available_reporting_integrations", lambda: [])
    assert main(["train", "--report-to", "wandb", "--output-dir", "o"]) == 2
    err = capsys.readouterr().err
    assert "--report-to wandb: wandb is not installed. Install it (pip install wandb)" in err
    assert main(["train", "--report-to", "tensorbored", "--output-dir", "o"]) == 2
    assert "unknown tracker" in capsys.readouterr().err


def test_an_installed_tracker_reaches_the_config(monkeypatch):
    monkeypatch.setattr("transformers.integrations.get_available_reporting_integrations",
                        lambda: ["tensorboard", "wandb"])
    config = train_config_from_arguments(parse("--report-to", "tensorboard,wandb", "--output-dir", "o"))
    assert config.report_to == ["tensorboard", "wandb"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--task", "chain_sum", "--dataset", "d.jsonl"], "--task and --dataset both name the training data"),
        (["--task-config", '{"max_terms": 2}'], "give --task NAME too"),
        (["--answer-column", "gold"], "--answer-column applies to --dataset"),
        (["--lora-r", "0", "--qlora"], "--qlora trains a LoRA adapter"),
        (["--reward-funcs", "no_such_reward"], "--reward-funcs no_such_reward: unknown reward"),
        (["--resume-from-checkpoint", "nowhere/checkpoint-3"], "--resume-from-checkpoint 'nowhere/checkpoint-3'"),
        (["--threads", "0"], "--threads must be at least 1"),
        (["--soft-rollout", "gaussian", "--gaussian-sigma", "-1"], "gaussian_sigma"),
    ],
)
def test_bad_train_arguments_are_clear_errors(tmp_path, tiny_dir, capsys, monkeypatch, argv, message):
    monkeypatch.setattr("hf_softthink.models.load_model", lambda *a, **k: pytest.fail("the model loaded"))
    argv = ["train", "--model", str(tiny_dir), "--output-dir", str(tmp_path / "o"), "--num-problems", "4", *argv]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_a_model_without_a_chat_template_is_refused(tiny_dir, tmp_path, capsys):
    import shutil

    base = tmp_path / "base-model"
    shutil.copytree(tiny_dir, base)
    tokenizer = tiny_tokenizer()
    tokenizer.chat_template = None
    (base / "chat_template.jinja").unlink(missing_ok=True)
    tokenizer.save_pretrained(base)
    assert main(tiny_run(base, tmp_path / "o")) == 2
    assert "has no chat template" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- threads


def test_default_threads_count_only_the_idle_cores():
    assert cpu_threads.default_cpu_threads(cores=8, load=0.0, torch_default=8) == 8
    assert cpu_threads.default_cpu_threads(cores=8, load=2.6, torch_default=8) == 5
    assert cpu_threads.default_cpu_threads(cores=2, load=1.6, torch_default=2) == 1
    assert cpu_threads.default_cpu_threads(cores=2, load=7.0, torch_default=2) == 1
    assert cpu_threads.default_cpu_threads(cores=16, load=0.0, torch_default=8) == 8  # never more than torch's


def test_busy_machine_warning(monkeypatch):
    assert cpu_threads.cpu_threads_warning(1, cores=2, load=0.3) is None
    busy = cpu_threads.cpu_threads_warning(1, cores=2, load=2.4)
    assert "busier than its cores (load average 2.4 on 2 cores)" in busy and "\n" not in busy
    assert "try --threads 1" in cpu_threads.cpu_threads_warning(2, cores=2, load=1.2)
    monkeypatch.setattr(cpu_threads, "load_average", lambda: None)  # an OS without a load average
    assert cpu_threads.cpu_threads_warning(4, cores=8) is None


def test_configure_threads(monkeypatch):
    import torch

    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
        monkeypatch.setattr(cpu_threads, "default_cpu_threads", lambda: 1)
        monkeypatch.setattr(cpu_threads, "cpu_threads_warning", lambda threads: f"warned {threads}")
        assert cpu_threads.configure_cpu_threads() == (1, "warned 1")
        assert cpu_threads.configure_cpu_threads(2) == (2, "warned 2")  # the user's choice, as given
        torch.set_num_threads(2)
        monkeypatch.setenv("OMP_NUM_THREADS", "2")  # the user fixed it: left alone
        assert cpu_threads.configure_cpu_threads()[0] == 2
        assert cpu_threads.configure_cpu_threads(on_gpu=True) == (2, None)
    finally:
        torch.set_num_threads(before)


# ---------------------------------------------------------------------------------------------- runs


def test_train_end_to_end_saves_adapter_card_curve_and_checkpoints(tiny_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(tiny_run(tiny_dir, out, "--save-steps", "1")) == 0
    captured = capsys.readouterr()
    assert "step 1/2 | reward " in captured.out and "step 2/2 | reward " in captured.out
    assert "s/step" in captured.out and "reward: first step" in captured.out
    assert "training:" in captured.err and "2/2" in captured.err  # the progress bar
    assert "gumbel rollouts, LoRA r16, 2 steps of 1 prompt x 4 completions, 8 training problems" in captured.err
    assert (out / "adapter_model.safetensors").is_file()
    assert json.loads((out / "generation_config.json").read_text())["soft_thinking"]["noise"] == "gumbel"
    card = ModelCard.load(out / "README.md")
    assert "![Mean reward per training step](reward_curve.png)" in card.text
    assert "reasoning-gym (basic_arithmetic)" in card.text and "| max_steps | 2 |" in card.text
    assert (out / "reward_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for step in (1, 2):  # every checkpoint carries the card and the curve of the run so far
        checkpoint = out / f"checkpoint-{step}"
        assert (checkpoint / "reward_curve.png").is_file()
        assert f"### Final metrics (step {step} of the run)" in (checkpoint / "README.md").read_text()


def test_ctrl_c_finishes_the_step_saves_a_checkpoint_and_the_run_resumes(tiny_dir, tmp_path, capsys, monkeypatch):
    import functools

    from hf_softthink import rewards

    real, calls = rewards.reasoning_gym_reward, []

    @functools.wraps(real)
    def interrupting(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            signal.raise_signal(signal.SIGINT)  # Ctrl-C during the first step's scoring
        return real(*args, **kwargs)

    monkeypatch.setattr(rewards, "reasoning_gym_reward", interrupting)
    out = tmp_path / "run"
    argv = tiny_run(tiny_dir, out, "--no-progress")
    argv[argv.index("--max-steps") + 1] = "3"
    assert main(argv) == 130
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert "Ctrl-C: finishing step 1, then saving a checkpoint and stopping" in captured.err
    assert "stopped by Ctrl-C after step 1 of 3" in captured.err
    checkpoint = out / "checkpoint-1"
    assert f"--resume-from-checkpoint {checkpoint}" in captured.err
    assert (checkpoint / "adapter_model.safetensors").is_file() and (checkpoint / "optimizer.pt").is_file()
    assert (out / "adapter_model.safetensors").is_file() and (out / "README.md").is_file()
    assert "step 2/3" not in captured.out

    assert main([*argv, "--resume-from-checkpoint", str(checkpoint)]) == 0
    resumed = capsys.readouterr().out
    assert "step 1/3" not in resumed and "step 2/3 | reward" in resumed and "step 3/3 | reward" in resumed
    assert len(calls) == 3


def test_a_second_ctrl_c_names_the_last_complete_checkpoint(tiny_dir, tmp_path, capsys, monkeypatch):
    """A second Ctrl-C often lands in a save: the newest checkpoint folder is then incomplete, and the message
    names the newest complete one instead."""
    from hf_softthink.trainer import SoftGRPOTrainer

    real_train = SoftGRPOTrainer.train

    def train_then_stop_in_a_save(self, *args, **kwargs):
        real_train(self, *args, **kwargs)  # one step, saved as checkpoint-1
        (tmp_path / "run" / "checkpoint-2").mkdir()  # a save cut short: no trainer_state.json, no weights
        raise KeyboardInterrupt

    monkeypatch.setattr(SoftGRPOTrainer, "train", train_then_stop_in_a_save)
    out = tmp_path / "run"
    argv = tiny_run(tiny_dir, out, "--no-progress", "--save-steps", "1")
    argv[argv.index("--max-steps") + 1] = "1"
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert f"saved before: the last complete checkpoint, {out / 'checkpoint-1'}" in err
    assert "checkpoint-2" not in err


def test_a_second_ctrl_c_stops_at_once():
    callback = InterruptCallback()
    with callback.catch_sigint():
        signal.raise_signal(signal.SIGINT)
        assert callback.requested
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_progress_callback_without_a_bar_prints_the_lines(capsys):
    from types import SimpleNamespace

    callback = RewardProgressCallback(progress=False)
    state = SimpleNamespace(is_world_process_zero=True, max_steps=4, global_step=0)
    callback.on_train_begin(None, state, None)
    state.global_step = 1
    callback.on_step_end(None, state, None)
    callback.on_log(None, state, None, logs={"reward": 0.5, "reward_std": 0.25, "loss": 0.1})
    callback.on_train_end(None, state, None)
    assert capsys.readouterr().out.startswith("step 1/4 | reward 0.50 ± 0.25 | loss 0.1 | ")


def test_jsonl_dataset_with_prompt_and_answer_columns(tiny_dir, tmp_path, capsys):
    data = tmp_path / "sums.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"What is {i} + 1?", "answer": str(i + 1)}) + "\n" for i in range(4)))
    out = tmp_path / "run"
    argv = tiny_run(tiny_dir, out, "--dataset", str(data), "--no-progress")
    argv[argv.index("--max-steps") + 1] = "1"
    assert main(argv) == 0
    card = (out / "README.md").read_text()
    assert "rewards/math_answer_reward/mean" in card  # math-verify against the answer column
    assert "4 training problems" in capsys.readouterr().err


def test_a_dataset_folder_loads_through_datasets_as_a_hub_dataset_would(tmp_path):
    """--dataset NAME that is not a file goes to `datasets.load_dataset(NAME, --dataset-config, split=...)`: a Hub
    id, or (here, offline) a local folder of data files; the column names and the split flags apply."""
    from hf_softthink.cli import train_dataset_from_arguments

    folder = tmp_path / "my-dataset"
    folder.mkdir()
    (folder / "train.jsonl").write_text("".join(json.dumps({"problem": f"{i} + 1 = ?", "solution": i + 1}) + "\n"
                                                for i in range(3)))
    dataset = train_dataset_from_arguments(parse("--dataset", str(folder), "--dataset-train-split", "train",
                                                 "--question-column", "problem", "--answer-column", "solution"))
    assert dataset["question"] == ["0 + 1 = ?", "1 + 1 = ?", "2 + 1 = ?"] and dataset["answer"] == ["1", "2", "3"]
    with pytest.raises(ValueError, match="Unknown split"):
        train_dataset_from_arguments(parse("--dataset", str(folder), "--dataset-train-split", "test"))


def test_qlora_trains_a_4bit_model(tiny_dir, tmp_path):
    pytest.importorskip("bitsandbytes")
    out = tmp_path / "run"
    argv = tiny_run(tiny_dir, out, "--qlora", "--no-progress")
    argv[argv.index("--max-steps") + 1] = "1"
    assert main(argv) == 0
    assert "4-bit nf4" in (out / "README.md").read_text()


def test_push_to_hub_uploads_the_saved_folder(tiny_dir, tmp_path, monkeypatch, capsys):
    from hf_softthink.trainer import SoftGRPOTrainer

    pushed = []
    monkeypatch.setattr(SoftGRPOTrainer, "init_hf_repo", lambda self, *a, **k: setattr(self, "hub_model_id", "me/run"))
    monkeypatch.setattr(SoftGRPOTrainer, "push_to_hub", lambda self, *a, **k: pushed.append(self.args.output_dir))
    out = tmp_path / "run"
    argv = tiny_run(tiny_dir, out, "--push-to-hub", "--hub-model-id", "me/run", "--no-progress")
    argv[argv.index("--max-steps") + 1] = "1"
    assert main(argv) == 0
    assert pushed == [str(out)]
    assert "pushed to the Hub: https://huggingface.co/me/run" in capsys.readouterr().out


def test_quickstart_task_is_the_default():
    from hf_softthink.cli import train_dataset_from_arguments
    from hf_softthink.data import decode_entry

    dataset = train_dataset_from_arguments(parse("--num-problems", "4"))
    assert len(dataset) == 4 and set(dataset["task"]) == {"basic_arithmetic"}
    entry = decode_entry(dataset[0]["entry"])
    assert entry["task_config"]["max_digits"] == QUICKSTART_TASK_CONFIG["max_digits"] == 1
    assert [m["role"] for m in dataset[0]["prompt"]] == ["user"]  # no system prompt, as in the quickstart


@pytest.mark.parametrize("command", [["demo"], ["generate", "q"], ["eval", "--task", "chain_sum", "--out", "OUT"]])
def test_demo_generate_and_eval_take_threads_and_refuse_a_bad_count(command, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("hf_softthink.models.load_model", lambda *a, **k: pytest.fail("the model loaded"))
    argv = [part.replace("OUT", str(tmp_path / "ev")) for part in command]
    assert main([*argv, "--threads", "0"]) == 2
    assert "--threads must be at least 1" in capsys.readouterr().err


def test_use_cpu_threads_sets_torch_threads_and_warns_on_a_busy_machine(monkeypatch, capsys):
    from hf_softthink.cli import use_cpu_threads

    before = torch.get_num_threads()
    try:
        assert use_cpu_threads(1) == 1 and torch.get_num_threads() == 1
        monkeypatch.setattr(cpu_threads, "load_average", lambda: 40.0)
        use_cpu_threads(1)
        assert "busier" in capsys.readouterr().err
    finally:
        torch.set_num_threads(before)
