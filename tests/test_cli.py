"""The hf-softthink command line (the model-free parts; the real run is in test_real_model.py)."""

import pytest

from hf_softthink import SoftThinkingConfig
from hf_softthink.cli import build_parser, config_from_arguments, main
from hf_softthink.demo import DEMO_COLD_STOP_PATIENCE, DEMO_MAX_THINKING_TOKENS, render_trace
from hf_softthink.models import tiny_tokenizer


def test_config_flags_map_onto_the_config():
    args = build_parser().parse_args(
        ["generate", "q", "--max-topk", "4", "--noise", "gumbel", "--gumbel-tau", "0.2", "--think-end", "7",
         "--cold-stop-entropy", "0.05", "--top-k", "0"]
    )
    cfg = config_from_arguments(args)
    assert cfg == SoftThinkingConfig(max_topk=4, noise="gumbel", gumbel_tau=0.2, think_end=7, cold_stop_entropy=0.05,
                                     top_k=None, max_thinking_tokens=DEMO_MAX_THINKING_TOKENS,
                                     cold_stop_patience=DEMO_COLD_STOP_PATIENCE)


def test_flag_defaults_are_the_demo_settings_and_cold_stop_can_be_switched_off():
    from hf_softthink.demo import DEMO_COLD_STOP_ENTROPY

    cfg = config_from_arguments(build_parser().parse_args(["demo"]))
    assert (cfg.max_thinking_tokens, cfg.cold_stop_entropy, cfg.cold_stop_patience) == (
        DEMO_MAX_THINKING_TOKENS, DEMO_COLD_STOP_ENTROPY, DEMO_COLD_STOP_PATIENCE)
    assert config_from_arguments(build_parser().parse_args(["demo", "--cold-stop-entropy", "0"])).cold_stop_entropy is None


def test_switch_flags_map_onto_the_config():
    args = build_parser().parse_args(
        ["generate", "q", "--mode", "switch", "--max-switches", "2", "--switch-beta", "0.7", "--switch-alpha", "0.5",
         "--think-start", "5", "--final-answer", "The answer is", "--final-answer-max-tokens", "8"]
    )
    cfg = config_from_arguments(args)
    assert (cfg.mode, cfg.max_switches, cfg.switch_beta, cfg.switch_alpha, cfg.think_start) == ("switch", 2, 0.7, 0.5, 5)
    assert cfg.final_answer == "The answer is" and cfg.final_answer_max_tokens == 8


def test_noise_clamp_logistic_normal_and_forced_end_flags_map_onto_the_config():
    args = build_parser().parse_args(
        ["generate", "q", "--noise", "gumbel", "--gumbel-noise-clamp", "-1.5", "3", "--forced-end-text",
         "</think>The answer is"]
    )
    cfg = config_from_arguments(args)
    assert (cfg.gumbel_noise_clamp, cfg.forced_end_text) == ((-1.5, 3.0), "</think>The answer is")
    args = build_parser().parse_args(["generate", "q", "--noise", "logistic_normal", "--logistic-normal-sigma", "2"])
    assert (config_from_arguments(args).noise, config_from_arguments(args).logistic_normal_sigma) == (
        "logistic_normal", 2.0)
    assert config_from_arguments(build_parser().parse_args(["generate", "q"])).gumbel_noise_clamp is None


def test_bad_flag_value_is_a_clear_error(capsys):
    assert main(["generate", "q", "--top-p", "2"]) == 2
    assert "SoftThinkingConfig.top_p=2.0 is invalid" in capsys.readouterr().err


def test_unknown_model_name_lists_the_known_ones(capsys):
    assert main(["generate", "q", "--model", "no-such-model"]) == 2
    assert "smollm2-135m" in capsys.readouterr().err


def test_trace_marks_uncertain_mixtures():
    import torch

    tok = tiny_tokenizer()
    ids = torch.tensor([tok.encode("ab", add_special_tokens=False), tok.encode("cd", add_special_tokens=False)])
    weights = torch.tensor([[0.9, 0.1], [0.55, 0.45]])
    assert render_trace(tok, ids, weights, torch.tensor([True, True])) == "a⟨c|d 0.45⟩"
    assert render_trace(tok, ids, weights, torch.tensor([True, False])) == "ac"


def test_generate_requires_a_question():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["generate"])


# ------------------------------------------------------------------------------------------------ --help


def _subcommands(parser):
    import argparse

    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return sub.choices


def test_every_flag_of_every_command_has_help():
    parser = build_parser()
    commands = _subcommands(parser)
    assert set(commands) == {"demo", "generate", "eval", "train", "lm-eval"}
    for name, command in commands.items():
        for action in command._actions:
            assert action.help and action.help.strip(), f"{name} {action.option_strings or action.dest}: no help"


def test_help_shows_every_real_default():
    for name, command in _subcommands(build_parser()).items():
        text = " ".join(command.format_help().split())
        for action in command._actions:
            if action.option_strings and action.default not in (None, False) and action.dest != "help":
                assert f"(default: {action.default})" in text, f"{name} {action.option_strings[0]}"


def test_top_level_help_says_what_the_tool_does(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "The `hf-softthink` command." not in text
    assert "concept tokens" in text and "arXiv:2505.15778" in text
    for command in ("demo", "generate", "eval", "train"):
        assert f"hf-softthink {command}" in text  # the examples


def test_eval_help_explains_every_decoding_mode(capsys):
    from hf_softthink.evaluation import PRESET_DESCRIPTIONS, PRESETS

    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for preset in PRESETS:
        assert f"{preset} {PRESET_DESCRIPTIONS[preset]}" in text
    assert '"hard" is ordinary decoding' in text and "resume" in text


# ---------------------------------------------------------------------------------------------- Ctrl-C


def test_ctrl_c_during_eval_says_what_was_saved_and_how_to_resume(tmp_path, monkeypatch, capsys):
    """Ctrl-C (a KeyboardInterrupt in the second generate call): one message, no traceback, exit code 130;
    rerunning the same command resumes."""
    from hf_softthink.models import tiny_model, tiny_tokenizer

    model, tokenizer = tiny_model("llama"), tiny_tokenizer()
    generate, calls = model.generate, []

    def interrupted_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return generate(*args, **kwargs)

    model.generate = interrupted_once
    monkeypatch.setattr("hf_softthink.models.load_model", lambda name: (model, tokenizer))
    out = tmp_path / "eval"
    argv = ["eval", "--task", "chain_sum", "--num-problems", "3", "--modes", "hard-greedy", "--batch-size", "1",
            "--max-new-tokens", "6", "--max-thinking-tokens", "2", "--samples", "2", "--out", str(out),
            "--no-progress"]  # fmt: skip
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"1 of 3 (mode, problem) results are saved in {out / 'samples.jsonl'} (1 by this run)" in err
    assert "resumes" in err and "hf-softthink eval --task chain_sum" in err
    assert len((out / "samples.jsonl").read_text().splitlines()) == 1
    assert main(argv) == 0
    assert len(calls) == 2 + 2  # the rerun decoded only the two problems not saved
    assert len((out / "samples.jsonl").read_text().splitlines()) == 3


@pytest.mark.slow
def test_sigint_to_a_running_eval_process(tmp_path):
    """The real thing: SIGINT to an `hf-softthink eval` process once it has saved a record."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from hf_softthink.models import tiny_model, tiny_tokenizer

    model_dir = tmp_path / "tiny"
    tiny_model("llama").save_pretrained(model_dir)
    tiny_tokenizer().save_pretrained(model_dir)
    out = tmp_path / "eval"
    argv = [sys.executable, "-m", "hf_softthink.cli", "eval", "--model", str(model_dir), "--task", "chain_sum",
            "--num-problems", "400", "--modes", "hard-sample", "--samples", "2", "--batch-size", "2",
            "--max-new-tokens", "48", "--out", str(out), "--no-progress"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def default_sigint() -> None:  # as under a terminal: a background job of a shell starts with SIGINT ignored
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    process = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, preexec_fn=default_sigint
    )
    records = out / "samples.jsonl"
    deadline = time.monotonic() + 600
    while not (records.exists() and records.read_text().count("\n") >= 1):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no record saved in 10 minutes"
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    saved = len(records.read_text().splitlines())
    assert f"{saved} of 400 (mode, problem) results are saved in {records}" in stderr
    assert "rerunning with the same settings and output folder resumes" in stderr
