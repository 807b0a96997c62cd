"""Bad inputs are read as the user meant them or refused, naming the thing and the fix (issue 11, sections 2-3).

One parametrised test per class of fault, each walking many cases:

* data files and rows (`load_prompts`): read as meant, or refused naming the file / row / column;
* invalid UTF-8: named with its file and line (a data file, an evaluation's resume log);
* the source's own standard columns replaced: a warning naming them;
* damaged saved folders (`load_soft_adapter`): the missing or broken file is named before anything loads;
* output folders (`evaluate_modes`, `hf-softthink eval --out`): checked before the model loads or decodes;
* command-line paths and JSON arguments: named before the model loads;
* non-object JSON for a `SoftThinkingConfig`;
* two evaluations on one output folder: the second is refused, a dead holder's lock does not block;
* settings that cannot do what they say: warned.

The trainer's inputs (reward outputs, prompts, rollout settings) are in test_trainer_inputs.py.
"""

from __future__ import annotations

import json
import os
import signal
import warnings
from pathlib import Path

import datasets
import pytest
from peft import LoraConfig, get_peft_model

from hf_softthink import SoftThinkingConfig
from hf_softthink.cli import main
from hf_softthink.data import build_prompt, load_prompts
from hf_softthink.evaluation import RECORDS_FILE, evaluate_modes
from hf_softthink.evaluation.lock import LOCK_FILE, OutputFolderLockedError, output_folder_lock
from hf_softthink.hub import load_soft_adapter, save_soft_thinking_config
from hf_softthink.models import tiny_model, tiny_tokenizer

datasets.disable_progress_bars()

BIG = 2**64  # beyond Arrow's 64-bit integers


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


def _file(name: str, content: str | bytes):
    def make(tmp_path: Path) -> Path:
        path = tmp_path / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
        return path

    return make


def _value(value):
    return lambda tmp_path: value


# ----------------------------------------------------------------------------- data: read as meant

COLUMNS = {"question": ["a?", "b?"], "answer": ["1", "2"]}

READ_AS_MEANT = {
    "columns on one line of a .json file": (
        _file("c.json", json.dumps(COLUMNS)),
        {},
        [("a?", "1"), ("b?", "2")],
    ),
    "columns in a pretty-printed .json file": (
        _file("c.json", json.dumps(COLUMNS, indent=2)),
        {},
        [("a?", "1"), ("b?", "2")],
    ),
    "columns in a .jsonl file": (
        _file("c.jsonl", json.dumps(COLUMNS) + "\n"),
        {},
        [("a?", "1"), ("b?", "2")],
    ),
    "columns with number answers as written": (
        _file("c.json", '{"question": ["a?", "b?"], "answer": [1.50, 18446744073709551616]}'),
        {},
        [("a?", "1.50"), ("b?", "18446744073709551616")],
    ),
    "a pretty-printed list of rows": (
        _file(
            "l.json",
            json.dumps([{"question": "a?", "answer": 1}, {"question": "b?", "answer": "x"}], indent=2),
        ),
        {},
        [("a?", "1"), ("b?", "x")],
    ),
    "jsonl answers beyond 64 bits": (
        _file(
            "big.jsonl",
            f'{{"question": "a?", "answer": {BIG}}}\n{{"question": "b?", "answer": {-(2**63) - 1}}}\n',
        ),
        {},
        [("a?", str(BIG)), ("b?", str(-(2**63) - 1))],
    ),
    "jsonl answers beyond 64 bits next to small ones": (
        _file("big.jsonl", f'{{"question": "a?", "answer": 3}}\n{{"question": "b?", "answer": {2**63}}}\n'),
        {},
        [("a?", "3"), ("b?", str(2**63))],
    ),
    "jsonl number answers keep their digits": (
        _file(
            "n.jsonl",
            '{"question": "a?", "answer": 1.50}\n{"question": "b?", "answer": 1e5}\n'
            '{"question": "c?", "answer": "x"}\n',
        ),
        {},
        [("a?", "1.50"), ("b?", "1e5"), ("c?", "x")],
    ),
    "numeric questions are text": (_file("q.jsonl", '{"question": 12, "answer": 3}\n'), {}, [("12", "3")]),
    "a UTF-8 byte-order mark": (
        _file("bom.jsonl", b'\xef\xbb\xbf{"question": "caf\xc3\xa9?", "answer": "1"}\n'),
        {},
        [("café?", "1")],
    ),
    "named columns beyond 64 bits": (
        _file("named.jsonl", f'{{"problem": "a?", "solution": {BIG}}}\n'),
        {"question_column": "problem", "answer_column": "solution"},
        [("a?", str(BIG))],
    ),
    "blank lines between jsonl rows": (
        _file("gaps.jsonl", '\n{"question": "a?", "answer": "1"}\n\n\n{"question": "b?", "answer": "2"}\n\n'),
        {},
        [("a?", "1"), ("b?", "2")],
    ),
    "a list of dicts with python ints beyond 64 bits": (
        _value([{"question": "a?", "answer": BIG}, {"question": "b?", "answer": 2}]),
        {},
        [("a?", str(BIG)), ("b?", "2")],
    ),
    "a dict of columns": (_value(COLUMNS), {}, [("a?", "1"), ("b?", "2")]),
    "a Dataset with integer answers": (
        _value(datasets.Dataset.from_dict({"question": ["a?"], "answer": [7]})),
        {},
        [("a?", "7")],
    ),
    "no answers wanted": (
        _file("q.jsonl", '{"question": "a?", "gold": {"x": 1}}\n'),
        {"answer_column": None},
        [("a?", None)],
    ),
}


@pytest.mark.parametrize("make,kwargs,expected", READ_AS_MEANT.values(), ids=READ_AS_MEANT.keys())
def test_data_is_read_as_meant(make, kwargs, expected, tmp_path):
    ds = load_prompts(make(tmp_path), thinking_instruction=None, **kwargs)
    assert list(zip(ds["question"], ds["answer"], strict=True)) == expected
    assert ds[0]["prompt"] == build_prompt(expected[0][0], None)


def test_mixed_extra_columns_become_text_as_written(tmp_path):
    path = _file(
        "x.jsonl",
        '{"question": "a?", "answer": "1", "level": 1.50}\n'
        '{"question": "b?", "answer": "2", "level": "hard"}\n',
    )(tmp_path)
    assert load_prompts(path)["level"] == ["1.50", "hard"]
    path = _file("y.jsonl", '{"question": "a?", "answer": "1", "id": 7, "tags": [1, 2]}\n')(tmp_path)
    ds = load_prompts(path)
    assert ds["id"] == [7] and ds["tags"] == [[1, 2]]  # single-kind columns keep their numbers


# ----------------------------------------------------------------------------- data: refused

REFUSED = {
    "a list question": (
        _file("q.jsonl", '{"question": "a?", "answer": "1"}\n{"question": ["b?"], "answer": "2"}\n'),
        {},
        ["row 1", "q.jsonl:2", "'question' is a list", "Write it as a string"],
    ),
    "an object question": (
        _file("q.jsonl", '{"question": {"text": "a?"}, "answer": "1"}\n'),
        {},
        ["row 0", "q.jsonl:1", "'question' is an object", "Write it as a string"],
    ),
    "an object answer": (
        _file("a.jsonl", '{"question": "a?", "answer": "1"}\n{"question": "b?", "answer": {"v": 2}}\n'),
        {},
        ["row 1", "a.jsonl:2", "'answer' is an object", "Write it as a string"],
    ),
    "a list answer in a list of rows": (
        _value([{"question": "a?", "answer": [1, 2]}]),
        {},
        ["row 0", "'answer' is a list"],
    ),
    "lists next to a scalar in one .json object": (
        _file("half.json", '{"question": ["a?", "b?"], "answer": "1"}'),
        {},
        ["row 0", "half.json:1", "'question' is a list"],
    ),
    "columns of different lengths": (
        _file("c.json", '{"question": ["a?", "b?"], "answer": ["1"]}'),
        {},
        ["c.json", "different lengths", "'question': 2", "'answer': 1", "one value per row"],
    ),
    "a dict of columns of different lengths": (
        _value({"question": ["a?", "b?"], "answer": ["1"]}),
        {},
        ["different lengths", "one value per row"],
    ),
    "a column mixing objects and strings": (
        _file(
            "m.jsonl",
            '{"question": "a?", "answer": "1", "meta": {"k": 1}}\n'
            '{"question": "b?", "answer": "2", "meta": "x"}\n',
        ),
        {},
        [
            "column 'meta'",
            "row 1",
            "m.jsonl:2",
            "holds a string",
            "rows before it hold an object",
            "drop the column",
        ],
    ),
    "a column mixing strings and objects": (
        _value(
            [
                {"question": "a?", "answer": "1", "meta": "x"},
                {"question": "b?", "answer": "2", "meta": {"k": 1}},
            ]
        ),
        {},
        ["column 'meta'", "row 1", "holds an object", "one kind of value"],
    ),
    "a column mixing lists and strings": (
        _file(
            "m.jsonl",
            '{"question": "a?", "answer": "1", "tags": ["x"]}\n'
            '{"question": "b?", "answer": "2", "tags": "y"}\n',
        ),
        {},
        ["column 'tags'", "row 1", "m.jsonl:2"],
    ),
    "an extra column beyond 64 bits": (
        _file(
            "id.jsonl",
            f'{{"question": "a?", "answer": "1", "id": 1}}\n{{"question": "b?", "answer": "2", "id": {BIG}}}\n',
        ),
        {},
        ["column 'id'", "row 1", "id.jsonl:2", str(BIG), "write it as a string"],
    ),
    "a null question": (
        _file("n.jsonl", '{"question": "a?", "answer": "1"}\n{"question": null, "answer": "2"}\n'),
        {},
        ["row 1", "n.jsonl:2", "no 'question'", "fill it in"],
    ),
    "an empty question": (
        _file("e.jsonl", '{"question": "", "answer": "1"}\n'),
        {},
        ["row 0", "e.jsonl:1", "empty 'question'", "fill it in"],
    ),
    "a blank question": (
        _value([{"question": "a?", "answer": "1"}, {"question": "  \n", "answer": "2"}]),
        {},
        ["row 1", "empty 'question'"],
    ),
    "an empty answer": (
        _file("e.jsonl", '{"question": "a?", "answer": ""}\n'),
        {},
        ["row 0", "empty 'answer'", "make it null"],
    ),
    "a blank question in a named column": (
        _value([{"problem": " ", "answer": "1"}]),
        {"question_column": "problem"},
        ["row 0", "empty 'problem'"],
    ),
    "a list question in a Dataset": (
        _value(datasets.Dataset.from_dict({"question": [["a?"], ["b?"]], "answer": ["1", "2"]})),
        {},
        ["row 0", "'question' is a list"],
    ),
    "an empty question in a Dataset": (
        _value(datasets.Dataset.from_dict({"question": ["a?", ""], "answer": ["1", "2"]})),
        {},
        ["row 1", "empty 'question'"],
    ),
    "a non-object item in a .json list": (
        _file("l.json", '[{"question": "a?", "answer": "1"}, ["b?", "2"]]'),
        {},
        ["item 1", "l.json", "is a list, not an object", ".json file holds a list of such objects"],
    ),
    "a .json file holding a number": (_file("n.json", "42"), {}, ["n.json holds a number", "not rows"]),
    "a .json file holding a string": (_file("s.json", '"hello"'), {}, ["s.json holds a string"]),
    "a truncated pretty .json file": (
        _file("t.json", json.dumps([{"question": "a?", "answer": "1"}], indent=2)[:-8]),
        {},
        ["t.json is not valid JSON", "line 4"],
    ),
    "a broken jsonl line": (
        _file("b.jsonl", '{"question": "a?", "answer": "1"}\n{"question": "b?", \n'),
        {},
        ["b.jsonl:2 is not valid JSON"],
    ),
    "a jsonl line holding a list": (
        _file("b.jsonl", '{"question": "a?", "answer": "1"}\n[1, 2]\n{"question": "c?", "answer": "3"}\n'),
        {},
        ["b.jsonl:2 is not a JSON object (got a list)"],
    ),
    "a folder": (lambda tmp_path: tmp_path, {}, ["is a folder, not a file"]),
}


@pytest.mark.parametrize("make,kwargs,fragments", REFUSED.values(), ids=REFUSED.keys())
def test_data_that_cannot_be_read_as_meant_is_refused_by_name(make, kwargs, fragments, tmp_path):
    with pytest.raises((ValueError, OSError)) as error:
        load_prompts(make(tmp_path), **kwargs)
    message = str(error.value)
    assert message.startswith("load_prompts:")
    for fragment in fragments:
        assert fragment in message, (fragment, message)


# ----------------------------------------------------------------------------- invalid UTF-8


def _resume_log(tmp_path: Path, tok) -> None:
    """An evaluation whose resume log has a damaged second line."""
    out = tmp_path / "out"
    out.mkdir()
    (out / RECORDS_FILE).write_bytes(b'{"run": "r", "problem_key": "p"}\n{"run": "\xff\xfe"}\n')
    evaluate_modes(
        tiny_model("llama"),
        tok,
        [{"question": "a?", "answer": "1"}],
        "hard-greedy",
        output_dir=out,
        max_new_tokens=2,
        max_thinking_tokens=1,
        progress=False,
    )


INVALID_UTF8 = {
    "a jsonl file, line 1": (
        lambda p, tok: load_prompts(_file("u.jsonl", b'{"question": "\xe9"}\n')(p)),
        "u.jsonl:1",
    ),
    "a jsonl file, line 3": (
        lambda p, tok: load_prompts(_file("u.jsonl", b'{"question": "a"}\n\n{"question": "b\xff"}\n')(p)),
        "u.jsonl:3",
    ),
    "a json document, line 2": (
        lambda p, tok: load_prompts(_file("u.json", b'[{"question": "a",\n "answer": "\xc3("}]')(p)),
        "u.json:2",
    ),
    "latin-1 text": (
        lambda p, tok: load_prompts(
            _file("l.jsonl", '{"question": "café?", "answer": "1"}\n'.encode("latin-1"))(p)
        ),
        "l.jsonl:1",
    ),
    "an evaluation's resume log on resume": (_resume_log, f"{RECORDS_FILE}:2"),
}


@pytest.mark.parametrize("run,where", INVALID_UTF8.values(), ids=INVALID_UTF8.keys())
def test_invalid_utf8_names_the_file_and_line(run, where, tmp_path, tok):
    with pytest.raises(ValueError) as error:
        run(tmp_path, tok)
    message = str(error.value)
    assert where in message and "not valid UTF-8" in message, message
    assert "UTF-8" in message.split("not valid UTF-8", 1)[1] or "Delete that line" in message  # the fix


# ----------------------------------------------------------------------------- own columns replaced

OWN_COLUMNS = {
    "its own prompt text": (
        [{"question": "a?", "answer": "1", "prompt": "my own prompt"}],
        {},
        ["'prompt' (1 of 1 rows)"],
    ),
    "its own chat prompt": (
        [{"question": "a?", "answer": "1", "prompt": [{"role": "user", "content": "Solve: a?"}]}],
        {},
        ["'prompt'"],
    ),
    "a question column besides the one used": (
        [{"problem": "a?", "question": "other", "answer": "1"}],
        {"question_column": "problem"},
        ["'question'"],
    ),
    "an answer column besides the one used": (
        [{"question": "a?", "answer": "old", "solution": "1"}],
        {"answer_column": "solution"},
        ["'answer'"],
    ),
    "an answer column with answers switched off": (
        [{"question": "a?", "answer": "1"}],
        {"answer_column": None},
        ["'answer'"],
    ),
    "a task column without entry": ([{"question": "a?", "answer": "1", "task": "chain_sum"}], {}, ["'task'"]),
    "a stale prompt_text": (
        [{"question": "a?", "answer": "1", "prompt": "mine", "prompt_text": "<s>mine"}],
        {},
        ["'prompt'", "'prompt_text'", "pass tokenizer="],
    ),
}


@pytest.mark.parametrize("rows,kwargs,fragments", OWN_COLUMNS.values(), ids=OWN_COLUMNS.keys())
def test_replacing_the_sources_own_columns_is_warned(rows, kwargs, fragments):
    with pytest.warns(UserWarning, match="were replaced by the standard columns") as caught:
        ds = load_prompts(rows, **kwargs)
    message = str(caught[0].message)
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    assert "rename those columns" in message
    assert "prompt_text" not in ds.column_names or "prompt_text" not in fragments


def test_reloading_prepared_data_warns_nothing(tmp_path, tok):
    prepared = load_prompts([{"question": "a?", "answer": "1", "id": 3}], tokenizer=tok)
    path = tmp_path / "prepared.jsonl"
    prepared.to_json(str(path))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = load_prompts(path)
        with_text = load_prompts(path, tokenizer=tok)
    assert again["prompt_text"] == prepared["prompt_text"] and again["id"] == [3]
    assert with_text["prompt_text"] == prepared["prompt_text"]


# ----------------------------------------------------------------------------- damaged saved folders


@pytest.fixture(scope="module")
def saved(tmp_path_factory, tok):
    """A saved LoRA adapter folder, a full-model folder and the base model folder (saved directly, no training)."""
    root = tmp_path_factory.mktemp("saved")
    base = tiny_model("llama", seed=0)
    base.save_pretrained(root / "base")
    tok.save_pretrained(root / "base")
    adapter = get_peft_model(tiny_model("llama", seed=0), LoraConfig(r=2, target_modules="all-linear"))
    adapter.peft_config["default"].base_model_name_or_path = str(root / "base")
    adapter.save_pretrained(root / "adapter")
    tok.save_pretrained(root / "adapter")
    save_soft_thinking_config(root / "adapter", SoftThinkingConfig(max_topk=3), base.generation_config)
    return root


def _cut(name):
    def damage(folder):
        data = (folder / name).read_bytes()
        (folder / name).write_bytes(data[: len(data) // 2])

    return damage


def _remove(name):
    return lambda folder: (folder / name).unlink()


def _write(name, text):
    return lambda folder: (folder / name).write_text(text)


def _set_json(name, key, value):
    def damage(folder):
        values = json.loads((folder / name).read_text())
        values[key] = value
        (folder / name).write_text(json.dumps(values))

    return damage


DAMAGED = {
    "adapter without its weights": (
        "adapter",
        _remove("adapter_model.safetensors"),
        {},
        ["adapter_config.json but no adapter_model.safetensors", "copy the whole folder"],
    ),
    "adapter without its config": (
        "adapter",
        _remove("adapter_config.json"),
        {},
        ["adapter weights but no adapter_config.json"],
    ),
    "adapter config cut short": (
        "adapter",
        _cut("adapter_config.json"),
        {},
        ["adapter_config.json is not valid JSON", "cut short"],
    ),
    "generation config cut short": (
        "adapter",
        _cut("generation_config.json"),
        {},
        ["generation_config.json is not valid JSON", "line"],
    ),
    "generation config holding a list": (
        "adapter",
        _write("generation_config.json", "[1, 2]"),
        {},
        ["generation_config.json holds a JSON array, not a JSON object"],
    ),
    "generation config holding null": (
        "adapter",
        _write("generation_config.json", "null"),
        {},
        ["generation_config.json holds null"],
    ),
    "a soft_thinking entry that is a string": (
        "adapter",
        _set_json("generation_config.json", "soft_thinking", "x"),
        {},
        ["generation_config.json: the soft_thinking entry is the string 'x'", "delete it"],
    ),
    "a soft_thinking entry with an unknown field": (
        "adapter",
        _set_json("generation_config.json", "soft_thinking", {"maxtopk": 3}),
        {},
        ["soft_thinking entry is invalid", "maxtopk"],
    ),
    "adapter weights cut short": (
        "adapter",
        _cut("adapter_model.safetensors"),
        {},
        ["adapter_model.safetensors cannot be read", "cut short"],
    ),
    "tokenizer cut short": ("adapter", _cut("tokenizer.json"), {}, ["tokenizer.json is not valid JSON"]),
    "tokenizer config not UTF-8": (
        "adapter",
        lambda f: (f / "tokenizer_config.json").write_bytes(b"{\xff}"),
        {},
        ["tokenizer_config.json is not UTF-8"],
    ),
    "no base model recorded": (
        "adapter",
        _set_json("adapter_config.json", "base_model_name_or_path", None),
        {},
        ["records no base model", "pass base_model="],
    ),
    "a recorded base model path that is gone": (
        "adapter",
        _set_json("adapter_config.json", "base_model_name_or_path", "/no/such/base"),
        {},
        ["base model recorded in", "'/no/such/base': no such file or folder"],
    ),
    "a base_model path that does not exist": (
        "adapter",
        lambda f: None,
        {"base_model": "./no/such/base"},
        ["base_model './no/such/base': no such file or folder"],
    ),
    "full model without weights": (
        "base",
        _remove("model.safetensors"),
        {},
        ["config.json but no model weights"],
    ),
    "full model config cut short": ("base", _cut("config.json"), {}, ["config.json is not valid JSON"]),
    "full model weights cut short": (
        "base",
        _cut("model.safetensors"),
        {},
        ["model.safetensors cannot be read"],
    ),
    "a sharded model missing a shard": (
        "base",
        _write(
            "model.safetensors.index.json",
            json.dumps({"weight_map": {"w": "model-00002-of-00002.safetensors"}}),
        ),
        {},
        ["lacks the weight shard(s) ['model-00002-of-00002.safetensors']"],
    ),
    "neither adapter nor model": (
        "adapter",
        lambda f: [_remove(n)(f) for n in ("adapter_config.json", "adapter_model.safetensors")],
        {},
        ["neither adapter_config.json (a PEFT adapter) nor config.json"],
    ),
    "a missing folder": (
        "adapter",
        lambda f: __import__("shutil").rmtree(f),
        {},
        ["no such folder", "snapshot_download"],
    ),
    "a file instead of the folder": (
        "adapter",
        lambda f: None,
        {"_file": True},
        ["is a file; give the folder"],
    ),
}


@pytest.mark.parametrize("kind,damage,kwargs,fragments", DAMAGED.values(), ids=DAMAGED.keys())
def test_damaged_saved_folders_are_named_before_loading(
    kind, damage, kwargs, fragments, saved, tmp_path, monkeypatch
):
    import shutil

    folder = tmp_path / kind
    shutil.copytree(saved / kind, folder)
    damage(folder)
    if kwargs.pop("_file", False):
        folder = folder / "adapter_config.json"
    monkeypatch.setattr("hf_softthink.hub._load_base", lambda *a, **k: pytest.fail("base model loaded"))
    monkeypatch.setattr(
        "hf_softthink.hub.AutoModelForCausalLM.from_pretrained", lambda *a, **k: pytest.fail("model loaded")
    )
    with pytest.raises((ValueError, OSError)) as error:
        load_soft_adapter(folder, **kwargs)
    for fragment in fragments:
        assert fragment in str(error.value), (fragment, str(error.value))


def test_an_intact_saved_folder_still_loads(saved):
    model, tokenizer = load_soft_adapter(saved / "adapter")
    assert model.base_model.model.generation_config.soft_thinking["max_topk"] == 3
    assert tokenizer is not None


# ----------------------------------------------------------------------------- output folders


def _unwritable(tmp_path: Path) -> Path:
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        return locked / "out"
    probe = Path("/sys/hf-softthink-probe")  # not writable even as root
    try:
        probe.mkdir()
    except OSError:
        return probe / "out"
    probe.rmdir()
    pytest.skip("no unwritable place on this system")


BAD_OUTPUT = {
    "a file": (lambda p: _file("taken", "x")(p), ["is a file, not a folder"]),
    "under a file": (lambda p: _file("taken", "x")(p) / "out", ["cannot be created", "taken' is a file"]),
    "deep under a file": (
        lambda p: _file("taken", "x")(p) / "a" / "b",
        ["cannot be created", "taken' is a file"],
    ),
    "an unwritable place": (_unwritable, ["cannot be written", "choose a folder you can write to"]),
}


@pytest.mark.parametrize("make,fragments", BAD_OUTPUT.values(), ids=BAD_OUTPUT.keys())
def test_bad_output_folders_are_refused_before_any_work(make, fragments, tmp_path, tok, capsys, monkeypatch):
    out = make(tmp_path)

    class NeverGenerates:
        def __getattr__(self, name):
            pytest.fail(f"the model was used ({name})")

    with pytest.raises(OSError) as error:
        evaluate_modes(
            NeverGenerates(),
            tok,
            [{"question": "a?", "answer": "1"}],
            "hard-greedy",
            output_dir=out,
            progress=False,
        )
    assert f"output_dir {str(out)!r}" in str(error.value)
    for fragment in fragments:
        assert fragment in str(error.value)
    monkeypatch.setattr("hf_softthink.models.load_model", lambda *a, **k: pytest.fail("model loaded"))
    assert main(["eval", "--num-problems", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"--out {str(out)!r}" in err and "Traceback" not in err
    for fragment in fragments:
        assert fragment in err


# ----------------------------------------------------------------------------- command-line arguments

CLI_ARGS = {
    "eval --model at an absolute path that does not exist": (
        ["eval", "--model", "/nonexistent/model"],
        ["--model '/nonexistent/model': no such file or folder"],
    ),
    "eval --model at a relative path": (
        ["eval", "--model", "./no-model"],
        ["--model './no-model': no such file"],
    ),
    "eval --model with a home path": (["eval", "--model", "~/no-such-model-dir"], ["no such file or folder"]),
    "eval --model with a nested path": (["eval", "--model", "models/a/b"], ["--model 'models/a/b': no such"]),
    "generate --model at a path that does not exist": (
        ["generate", "q", "--model", "/nonexistent"],
        ["--model '/nonexistent': no such file or folder", "Hub id"],
    ),
    "--task-config holding an array": (
        ["eval", "--task-config", "[1]"],
        ["--task-config must be a JSON object", "[1]"],
    ),
    "--task-config holding null": (
        ["eval", "--task-config", "null"],
        ["--task-config must be a JSON object"],
    ),
    "--task-config holding a string": (
        ["eval", "--task-config", '"x"'],
        ["--task-config must be a JSON object"],
    ),
    "--task-config holding a number": (
        ["eval", "--task-config", "3"],
        ["--task-config must be a JSON object"],
    ),
    "--task-config that is not JSON": (
        ["eval", "--task-config", "{bad"],
        ["--task-config must be a JSON object"],
    ),
    "--task-config with a file task": (
        ["eval", "--task", "{data}", "--task-config", "{}"],
        ["--task-config configures a reasoning-gym task"],
    ),
    "--question-column with a reasoning-gym task": (
        ["eval", "--question-column", "q"],
        ["--question-column names a column of a JSONL/JSON file"],
    ),
    "--answer-column with a reasoning-gym task": (
        ["eval", "--answer-column", "gold"],
        ["drop --answer-column"],
    ),
}


@pytest.mark.parametrize("argv,fragments", CLI_ARGS.values(), ids=CLI_ARGS.keys())
def test_command_line_paths_and_json_are_named_before_the_model_loads(
    argv, fragments, tmp_path, capsys, monkeypatch
):
    monkeypatch.setattr("hf_softthink.models.load_model", lambda *a, **k: pytest.fail("model loaded"))
    data = _file("p.jsonl", '{"question": "a?", "answer": "1"}\n')(tmp_path)
    argv = [a.replace("{data}", str(data)) for a in argv]
    if argv[0] == "eval":
        argv += ["--out", str(tmp_path / "out")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("hf-softthink: error:") and "Repo id" not in err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    assert not (tmp_path / "out").exists()  # refused before anything was written


# ----------------------------------------------------------------------------- config JSON

NOT_AN_OBJECT = {
    "null": ("null", "got null"),
    "an array": ("[1]", "got an array"),
    "a string": ('"max_topk"', "got a string"),
    "a number": ("3", "got a number"),
    "a boolean": ("true", "got a boolean"),
    "not JSON": ("{max_topk: 3}", "is not valid JSON"),
    "empty text": ("", "is not valid JSON"),
    "not text": (None, "is not valid JSON"),
}


@pytest.mark.parametrize("text,fragment", NOT_AN_OBJECT.values(), ids=NOT_AN_OBJECT.keys())
def test_soft_thinking_config_json_must_be_an_object(text, fragment):
    with pytest.raises(ValueError) as error:
        SoftThinkingConfig.from_json(text)
    assert "SoftThinkingConfig.from_json needs a JSON object of its fields" in str(error.value)
    assert fragment in str(error.value)


@pytest.mark.parametrize("values", [None, [1], "max_topk", 3], ids=["None", "list", "str", "int"])
def test_soft_thinking_config_from_dict_needs_a_dict(values):
    with pytest.raises(TypeError, match="SoftThinkingConfig.from_dict needs a dict of its fields"):
        SoftThinkingConfig.from_dict(values)


# ----------------------------------------------------------------------------- one evaluation per folder

def test_a_second_evaluation_on_a_locked_folder_is_refused(held_lock, tok, capsys, monkeypatch):
    out, holder = held_lock
    model = tiny_model("llama")
    model.generate = lambda *a, **k: pytest.fail("decoded")
    with pytest.raises(OutputFolderLockedError) as error:
        evaluate_modes(
            model, tok, [{"question": "a?", "answer": "1"}], "hard-greedy", output_dir=out, progress=False
        )
    assert f"pid {holder.pid}" in str(error.value) and str(out) in str(error.value)
    assert "wait for it to finish" in str(error.value)
    monkeypatch.setattr("hf_softthink.models.load_model", lambda *a, **k: pytest.fail("model loaded"))
    assert main(["eval", "--num-problems", "1", "--out", str(out)]) == 2
    assert f"Another evaluation (pid {holder.pid}" in capsys.readouterr().err
    assert not (out / RECORDS_FILE).exists()


@pytest.mark.parametrize("end", ["killed", "stale file"])
def test_a_dead_holder_does_not_block(end, held_lock, tok):
    out, holder = held_lock
    if end == "killed":
        holder.send_signal(signal.SIGKILL)
    else:  # a lock file whose process is gone, with no lock held on it
        holder.kill()
        holder.wait()
        (out / LOCK_FILE).write_text("pid 999999 on elsewhere, started long ago\n")
    holder.wait()
    result = evaluate_modes(
        tiny_model("llama"),
        tok,
        [{"question": "a?", "answer": "1"}],
        "hard-greedy",
        output_dir=out,
        max_new_tokens=2,
        max_thinking_tokens=1,
        progress=False,
    )
    assert result.summary["hard-greedy"]["num_problems"] == 1
    assert not (out / LOCK_FILE).exists()  # released and removed


def test_the_lock_is_reentrant_within_a_process(tmp_path):
    with output_folder_lock(tmp_path):
        with output_folder_lock(tmp_path):
            assert (tmp_path / LOCK_FILE).read_text().startswith(f"pid {os.getpid()} ")
        assert (tmp_path / LOCK_FILE).exists()
    assert not (tmp_path / LOCK_FILE).exists()


# ----------------------------------------------------------------------------- settings that cannot work

EVAL_SETTINGS = {
    "budget equal to the length": (
        dict(max_new_tokens=8, max_thinking_tokens=8),
        "max_new_tokens=8 is not larger",
    ),
    "budget beyond the length": (
        dict(max_new_tokens=4, max_thinking_tokens=64),
        "thinking budget max_thinking_tokens=64",
    ),
    "a soft mode's own budget": (
        dict(modes=[SoftThinkingConfig(max_thinking_tokens=9)], max_new_tokens=6, max_thinking_tokens=2),
        "max_thinking_tokens=9",
    ),
    "think-end is end-of-sequence": (dict(think_end="<|im_end|>"), "is the end-of-sequence token"),
}


@pytest.mark.parametrize("settings,fragment", EVAL_SETTINGS.values(), ids=EVAL_SETTINGS.keys())
def test_evaluation_settings_that_cannot_work_are_warned(settings, fragment, tok):
    settings = {"modes": "hard-greedy", "max_new_tokens": 4, "max_thinking_tokens": 2, **settings}
    with pytest.warns(UserWarning, match="never answers|no completion has an answer phase") as caught:
        evaluate_modes(
            tiny_model("llama"), tok, [{"question": "a?", "answer": "1"}], progress=False, **settings
        )
    assert any(fragment in str(w.message) for w in caught), [str(w.message) for w in caught]


def test_workable_evaluation_settings_warn_nothing(tok):
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        evaluate_modes(
            tiny_model("llama"),
            tok,
            [{"question": "a?", "answer": "1"}],
            "hard-greedy,soft-greedy",
            max_new_tokens=4,
            max_thinking_tokens=2,
            progress=False,
        )
