"""The command line of fillm_spacy.finetune: project.yml's train-llm-pos, evaluate-llm-ner and
evaluate-llm-pos parse to the settings train()/evaluate() read (both replaced by recorders; the
real runs on tiny models are in test_llm.py), under the names the adapter's report keeps."""

import pytest

from fillm_spacy.finetune import cli

# The settings train() receives, in the order the adapter's report lists them.
TRAIN_DEFAULTS = {
    "command": "train",
    "task": None,
    "model": "gemma3-270m",
    "train": None,
    "dev": None,
    "train_range": None,
    "dev_range": None,
    "limit": None,
    "output": None,
    "max_steps": 200,
    "lr": 2e-4,
    "warmup": 0.05,
    "batch_size": 2,
    "grad_accum": 1,
    "max_length": 1024,
    "max_input_pieces": 768,
    "lora_r": 16,
    "lora_alpha": 32.0,
    "lora_dropout": 0.05,
    "target_modules": "q_proj,k_proj,v_proj,o_proj",
    "labels": None,
    "chat_format": "auto",
    "lang": "tl",
    "device": "cpu",
    "dtype": "float32",
    "seed": 0,
    "log_every": 10,
}
EVALUATE_DEFAULTS = {
    "task": None,
    "model": None,
    "adapter": None,
    "test": None,
    "range": None,
    "limit": None,
    "output": None,
    "predictions": None,
    "save_responses": None,
    "shots": None,
    "shots_range": None,
    "n_shots": 3,
    "max_new_tokens": None,
    "max_tokens_per_prompt": None,
    "context_length": None,
    "batch_size": 4,
    "labels": None,
    "chat_format": "auto",
    "lang": "tl",
    "device": "cpu",
    "dtype": "float32",
}


@pytest.fixture
def received(monkeypatch):
    calls = []
    monkeypatch.setattr(cli, "run_train", lambda args: calls.append(vars(args)) or {"ran": "train"})
    monkeypatch.setattr(cli, "run_evaluate", lambda args: calls.append(vars(args)) or {"ran": "evaluate"})
    return calls


def test_train_llm_pos(received):
    argv = "train --task pos --model base --train corpus/ud/train.spacy --dev corpus/ud/dev.spacy --dev-range 0:5"
    argv += " --output training/llm_pos --max-steps 300 --batch-size 2 --lr 3e-4 --max-length 640"
    assert cli.main(argv.split()) == {"ran": "train"}
    expected = {
        **TRAIN_DEFAULTS,
        "task": "pos",
        "model": "base",
        "train": "corpus/ud/train.spacy",
        "dev": "corpus/ud/dev.spacy",
        "dev_range": "0:5",
        "output": "training/llm_pos",
        "max_steps": 300,
        "lr": 3e-4,
        "max_length": 640,
    }
    assert received == [expected] and list(received[0]) == list(TRAIN_DEFAULTS)


def test_evaluate_llm_ner_and_pos(received):
    ner = "evaluate --task ner --model base --test corpus/test/ner-wikiann.spacy --shots corpus/ner/train.spacy"
    ner += " --shots-range 0:10 --n-shots 3 --output metrics/generative/llm_ner_3shot.json"
    ner += " --predictions metrics/generative/llm_ner_3shot.spacy"
    pos = "evaluate --adapter training/llm_pos --test corpus/test/ud-newscrawl-heldout.spacy --range 0:20"
    pos += " --output metrics/generative/llm_pos.json --predictions metrics/generative/llm_pos.spacy"
    assert cli.main(ner.split()) == cli.main(pos.split()) == {"ran": "evaluate"}
    assert received == [
        {
            **EVALUATE_DEFAULTS,
            "task": "ner",
            "model": "base",
            "test": "corpus/test/ner-wikiann.spacy",
            "shots": "corpus/ner/train.spacy",
            "shots_range": "0:10",
            "output": "metrics/generative/llm_ner_3shot.json",
            "predictions": "metrics/generative/llm_ner_3shot.spacy",
        },
        {
            **EVALUATE_DEFAULTS,
            "adapter": "training/llm_pos",
            "test": "corpus/test/ud-newscrawl-heldout.spacy",
            "range": "0:20",
            "output": "metrics/generative/llm_pos.json",
            "predictions": "metrics/generative/llm_pos.spacy",
        },
    ]


def test_the_former_base_option_still_names_the_model(received):
    cli.main(["train", "--task", "headline", "--base", "old", "--train", "pairs.jsonl", "--output", "out"])
    cli.main(["evaluate", "--base", "old", "--test", "t.spacy", "--task", "pos"])
    assert [call["model"] for call in received] == ["old", "old"]


def test_bad_choices_and_missing_options_exit_2(received, capsys):
    for argv, message in (
        (["train", "--task", "summary", "--train", "x", "--output", "y"], "--task must be one of pos, ner, headline"),
        (["evaluate", "--task", "headline", "--test", "x"], "--task must be one of pos, ner"),
        (["evaluate", "--test", "x", "--chat-format", "chatml"], "--chat-format must be one of auto, plain"),
    ):
        with pytest.raises(SystemExit) as stopped:
            cli.main(argv)
        err = capsys.readouterr().err.strip()
        assert stopped.value.code == 2 and err.startswith("Error: ") and message in err and "\n" not in err
    with pytest.raises(SystemExit) as stopped:
        cli.main(["train", "--task", "pos", "--output", "y"])  # --train is required
    assert stopped.value.code == 2 and "--train" in capsys.readouterr().err
    assert received == []
