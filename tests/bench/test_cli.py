"""The command line of fillm_spacy.bench and bench.depth_plot: what the parent process asks of
each measurement's subprocess parses there to the measurement's arguments (the measurements
themselves replaced by recorders), project.yml's `bench` invocation, and the depth plot drawn."""

import json

import pytest

from fillm_spacy.bench import cli, depth_plot


@pytest.fixture
def children(monkeypatch):
    """in_subprocess records what it was asked and answers with a measurement."""
    asked = []

    def in_subprocess(args):
        asked.append(args)
        return {"load_seconds_base_model_in_memory": 0.5} if "--warm-load" in args else {"words_per_second": 100.0}

    monkeypatch.setattr(cli, "in_subprocess", in_subprocess)
    return asked


@pytest.fixture
def measured(monkeypatch):
    """Every measurement function records its arguments."""
    calls = []

    def recorder(name):
        return lambda *args, **kwargs: calls.append((name, args, kwargs)) or {"measured": name}

    for name in ("measure_pipe", "measure_warm_load", "measure_train", "measure_encoder", "measure_accuracy"):
        monkeypatch.setattr(cli, name, recorder(name))
    monkeypatch.setattr(cli, "measure_profile", recorder("measure_profile"))
    import fillm_spacy.bench.scale as scale

    monkeypatch.setattr(scale, "measure_scale", recorder("measure_scale"))
    return calls


def test_project_bench_step(children, capsys):
    """project.yml's `bench`: three pipelines, the raw text, --int8."""
    pipelines = ["training/tl_fillm_sm/model-best", "training/baseline/model", "training/tl_fillm_lg/model-best"]
    argv = ["pipe", *[part for p in pipelines for part in ("--pipeline", p)], "--texts", "raw.txt", "--int8"]
    result = cli.main(argv)
    common = ["--texts", "raw.txt", "--lines", "500", "--n-process", "1"]
    assert children == [
        *[["pipe", "--pipeline", p, *common] for p in pipelines],
        *[["pipe", "--pipeline", p, "--warm-load"] for p in pipelines],
        ["pipe", "--pipeline", pipelines[0], "--int8", *common],
    ]
    assert len(result["runs"]) == 4 and result["words_per_second_ratio_first_to_second"] == 1.0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == result


@pytest.mark.parametrize(
    "argv, expected",
    [
        (
            ["pipe", "--pipeline", "p", "--precision", "bfloat16", "--compiled", "--batch-size", "8", "--lines", "5"],
            ("measure_pipe", ("p", "assets/raw/alt-fil-wikinews.txt", 5, 8, 1, False, "bfloat16", True)),
        ),
        (
            ["train", "--config", "c.cfg", "--train", "t.spacy", "--steps", "3", "--vectors", "", "--set", "a.b=1"],
            ("measure_train", ("c.cfg", "t.spacy", "corpus/ud/dev.spacy", 3, {"paths.vectors": None, "a.b": "1"})),
        ),
        (
            ["encoder", "--model", "tiny", "--lines", "4", "--last-layer", "2", "--lora-r", "4"],
            ("measure_encoder", ("tiny", "assets/raw/alt-fil-wikinews.txt", 4, 2, 4)),
        ),
        (["accuracy", "--pipeline", "p", "--dev", "d.spacy"], ("measure_accuracy", ("p", "d.spacy", False))),
        (
            ["profile", "--pipeline", "p", "--texts", "x.txt", "--lines", "5", "--matmul-size", "64"],
            ("measure_profile", ("p", "x.txt", 5, None, 64)),
        ),
    ],
)
def test_each_mode_forwards_its_options_to_the_subprocess(children, measured, argv, expected):
    cli.main(argv)
    for child in children:  # each subprocess's command line parses to the measurement's arguments
        cli.main([*child, "--inline"])
    assert measured[0][:2] == expected
    if argv[0] == "pipe":
        assert measured[1][:2] == ("measure_warm_load", ("p",))
    if argv[0] == "accuracy":
        assert measured[1][:2] == ("measure_accuracy", ("p", "d.spacy", True))


def test_scale_runs_each_training_and_depth_apart(children, measured, tmp_path):
    texts = tmp_path / "texts.txt"
    texts.write_text("Kumain ang bata.\nUmuulan.\n", encoding="utf8")
    argv = ["scale", "--preset", "tiny", "--texts", str(texts), "--device", "cpu", "--dtype", "float32"]
    cli.main([*argv, "--training", "lora", "--last-layer", "2", "--last-layer", "4", "--steps", "1"])
    assert [(c[c.index("--training") + 1], c[c.index("--last-layer") + 1]) for c in children] == [
        ("lora", "2"),
        ("lora", "4"),
    ]
    cli.main([*children[0], "--inline"])
    name, args, _ = measured[0]
    assert name == "measure_scale" and args[0] == "tiny" and args[1] == ["Kumain ang bata.", "Umuulan."]
    assert args[3:8] == ("cpu", "float32", "lora", 2, 1000)


def test_bad_choices_are_one_line_and_exit_2(children, capsys):
    for argv, message in (
        (["pipe", "--pipeline", "p", "--precision", "float16"], "--precision must be one of auto, float32, bfloat16"),
        (["profile", "--pipeline", "p", "--precision", "int4"], "--precision must be one of"),
        (["annotate", "--engine", "spark"], "--engine must be local or ray"),
    ):
        with pytest.raises(SystemExit) as stopped:
            cli.main(argv)
        err = capsys.readouterr().err.strip()
        assert stopped.value.code == 2 and err.startswith("Error: ") and message in err and "\n" not in err
    assert children == []


def test_depth_plot_draws_the_runs_and_refuses_an_incomplete_one(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    runs = [
        {"name": "frozen 4+8+12", "words_per_second": 260, "pos_acc": 92.1, "dep_las": 68.0},
        {"name": "baseline", "words_per_second": 9000, "pos_acc": 90.0, "dep_las": 65.0, "baseline": True},
    ]
    (tmp_path / "runs.json").write_text(json.dumps(runs), encoding="utf8")
    output = tmp_path / "docs" / "depth_curve.png"
    assert depth_plot.main([str(tmp_path / "runs.json"), str(output)]) == output
    assert output.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert capsys.readouterr().out.strip() == str(output)
    (tmp_path / "runs.json").write_text(json.dumps([{"name": "no scores"}]), encoding="utf8")
    with pytest.raises(SystemExit) as stopped:
        depth_plot.main([str(tmp_path / "runs.json"), str(output)])
    err = capsys.readouterr().err.strip()
    assert stopped.value.code == 1 and err.startswith("Error: Each run needs name") and "\n" not in err
