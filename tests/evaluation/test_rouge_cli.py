"""The command line of fillm_spacy.evaluation.rouge: project.yml's evaluate-summarizer on the
headline sample, the abstractive settings (and the former --model-name) reaching the summarizer,
and one-line errors."""

import json
from pathlib import Path

import pytest

from fillm_spacy.evaluation import rouge

DATA = Path(__file__).parent.parent / "data" / "ntrex-sample.jsonl"


def test_evaluate_summarizer_as_project_yml_runs_it(tmp_path, capsys):
    pytest.importorskip("rouge_score")
    output = tmp_path / "metrics" / "rouge_centrality.json"
    argv = ["--data", str(DATA), "--range", "1:3", "--mode", "centrality", "--max-sentences", "1"]
    result = rouge.main([*argv, "--output", str(output)])
    assert result["n_docs"] == 2 and result["range"] == "1:3"
    assert result["system"]["config"] == {"mode": "centrality", "batch_size": 4, "max_sentences": 1}
    assert json.loads(output.read_text()) == json.loads(capsys.readouterr().out) == json.loads(json.dumps(result))


@pytest.mark.parametrize("model_option", ["--model", "--model-name"])
def test_abstractive_settings_reach_the_summarizer(model_option, monkeypatch, tmp_path):
    pytest.importorskip("rouge_score")
    configs = []

    def summarize(texts, lang, config):
        configs.append((lang, config))
        return ["Ulo ng balita"] * len(texts)

    monkeypatch.setattr(rouge, "summarize", summarize)
    argv = ["--data", str(DATA), "--limit", "2", model_option, "tiny-model", "--adapter", "adapters/headline"]
    result = rouge.main(
        [*argv, "--max-new-tokens", "8", "--chat-format", "plain", "--lang", "fil", "--batch-size", "2"]
    )
    system = {
        "mode": "abstractive",
        "batch_size": 2,
        "model_name": "tiny-model",
        "adapter": "adapters/headline",
        "max_new_tokens": 8,
        "max_input_pieces": 768,
        "chat_format": "plain",
    }
    assert configs == [("fil", system), ("fil", {"mode": "lead", "max_sentences": 1})]
    assert result["n_docs"] == 2 and result["range"] is None and result["system"]["config"] == system


def test_errors_are_one_line(tmp_path, capsys):
    predictions = tmp_path / "predictions.jsonl"
    predictions.write_text('{"doc_id": "someone-else", "prediction": "x"}\n', encoding="utf8")
    for argv, code, message in (
        (["--data", str(DATA), "--mode", "extractive"], 2, "--mode must be one of lead, centrality, abstractive"),
        (["--data", str(DATA), "--predictions", str(predictions)], 1, "--predictions lacks 4 doc ids"),
    ):
        with pytest.raises(SystemExit) as stopped:
            rouge.main(argv)
        err = capsys.readouterr().err.strip()
        assert stopped.value.code == code and err.startswith("Error: ") and message in err and "\n" not in err
