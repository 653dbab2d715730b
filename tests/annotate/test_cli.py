"""The command line of fillm_spacy.annotate: the invocations of project.yml and the docs parse to
the settings they always meant (annotate() itself replaced by a recorder)."""

import pytest

from fillm_spacy.annotate import cli

# What `annotate()` receives when the command line names only MODEL INPUT OUTPUT_DIR.
DEFAULTS = {
    "fmt": "spacy",
    "text_key": "text",
    "batch_size": None,
    "n_process": 1,
    "shard_size": 1000,
    "engine": "local",
    "address": None,
    "gpu_id": -1,
    "force": False,
    "part_tokens": 10000,
    "part_chars": cli.PART_CHARS,
    "shard_timeout": 3600,
    "progress": None,
}


@pytest.fixture
def calls(monkeypatch):
    recorded = []

    def annotate(model, source, output_dir, **settings):
        recorded.append(((model, source, output_dir), settings))
        return {"line": "annotated 0 documents"}

    monkeypatch.setattr(cli, "annotate", annotate)
    return recorded


@pytest.mark.parametrize(
    "argv, changed",
    [
        ([], {}),
        # project.yml: annotate-silver, self-training, the quick workflow
        (["--format", "spacy", "--gpu-id", "-1", "--force"], {"force": True}),
        (["--format", "conllu"], {"fmt": "conllu"}),  # README
        (["--format", "conllu", "--n-process", "2"], {"fmt": "conllu", "n_process": 2}),  # docs/annotate.md
        (
            ["--engine", "ray", "--address", "auto", "--n-process", "8"],
            {"engine": "ray", "address": "auto", "n_process": 8},
        ),
        # spacy apply's short names, and the rest
        (
            ["-tk", "body", "-b", "16", "-n", "2", "-g", "0", "-F"],
            {"text_key": "body", "batch_size": 16, "n_process": 2, "gpu_id": 0, "force": True},
        ),
        (
            ["--text-key=body", "--shard-size", "2", "--part-tokens", "64", "--part-chars", "500"],
            {"text_key": "body", "shard_size": 2, "part_tokens": 64, "part_chars": 500},
        ),
        (["--shard-timeout", "0.5", "--no-progress"], {"shard_timeout": 0.5, "progress": False}),
        (["--progress"], {"progress": True}),
    ],
)
def test_invocations_parse_to_the_settings(calls, capsys, argv, changed):
    cli.main(["tl_fillm_sm", "corpus.jsonl", "out/", *argv])
    assert calls == [(("tl_fillm_sm", "corpus.jsonl", "out/"), {**DEFAULTS, **changed})]
    assert capsys.readouterr().err.strip() == "annotated 0 documents"


def test_a_bad_format_or_engine_is_one_line_and_exit_2(tmp_path, capsys):
    for option, value in (("--format", "xml"), ("--engine", "spark")):
        with pytest.raises(SystemExit) as stopped:
            cli.main([str(tmp_path), str(tmp_path / "in.txt"), str(tmp_path / "out"), option, value])
        err = capsys.readouterr().err.strip()
        assert stopped.value.code == 2 and err.startswith(f"error: {option} must be one of") and "\n" not in err
        assert not (tmp_path / "out").exists()


def test_a_missing_argument_or_a_bad_number_is_a_usage_error(capsys):
    for argv in (["tl_fillm_sm", "corpus.jsonl"], ["tl_fillm_sm", "corpus.jsonl", "out", "--shard-size", "many"]):
        with pytest.raises(SystemExit) as stopped:
            cli.main(argv)
        assert stopped.value.code == 2
    assert "Traceback" not in capsys.readouterr().err
