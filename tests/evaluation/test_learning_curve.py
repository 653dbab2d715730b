"""The learning-curve tool: subsets, budgets, commands and the report (no training here)."""

import json
from pathlib import Path

import pytest
import spacy
from spacy.tokens import DocBin
from typer.testing import CliRunner

from fillm_spacy.evaluation.learning_curve import Point, app, scaled, subset, train_commands

from ..conftest import sample_docs

runner = CliRunner()


def test_subsets_are_seeded_nested_shares_of_the_docs(tmp_path):
    source = tmp_path / "train.spacy"
    DocBin(docs=sample_docs(40)).to_disk(source)
    vocab = spacy.blank("tl").vocab

    def texts(path):
        return [d.text for d in DocBin().from_disk(path).get_docs(vocab)]

    assert subset(source, tmp_path / "a.spacy", 10, 1.0, seed=0) == 10
    assert subset(source, tmp_path / "b.spacy", 10, 1.0, seed=0) == 10
    assert subset(source, tmp_path / "c.spacy", 10, 1.0, seed=1) == 10
    assert subset(source, tmp_path / "d.spacy", 20, 1.0, seed=0) == 20
    assert subset(source, tmp_path / "e.spacy", None, 0.25, seed=0) == 10
    assert texts(tmp_path / "a.spacy") == texts(tmp_path / "b.spacy") == texts(tmp_path / "e.spacy")
    assert texts(tmp_path / "a.spacy") != texts(tmp_path / "c.spacy")
    assert texts(tmp_path / "d.spacy")[:10] == texts(tmp_path / "a.spacy")  # smaller sets nest in larger ones
    with pytest.raises(ValueError, match="fewer than the 41"):
        subset(source, tmp_path / "f.spacy", 41, 1.0, seed=0)


def test_budgets_scale_with_the_data_and_keep_the_shipped_recipe():
    assert scaled(3000, 1.0, 200) == 3000 and scaled(3000, 0.25, 200) == 750 and scaled(3000, 0.01, 200) == 200
    data = {k: Path(k) for k in ("dev", "ner_dev", "vectors", "train", "ner_train")}
    (lg,) = train_commands(
        Point("tl_fillm_lg", 300, 1, 0.5), data, Path("out"), 0.25, 0.5, "base", Path("configs"), 200, -1
    )
    assert lg[lg.index("--training.max_steps") + 1] == "750"
    assert lg[lg.index("--training.eval_frequency") + 1] == "62"
    assert lg[lg.index("--system.seed") + 1] == "1" and "configs/tl_fillm_lg.cfg" in lg
    parser, ner, assemble = train_commands(
        Point("baseline", 300, 0, 0.5), data, Path("out"), 0.25, 0.5, "base", Path("configs"), 200, -1
    )
    assert parser[parser.index("--training.max_steps") + 1] == "400"
    assert ner[ner.index("--training.max_steps") + 1] == "500"
    assert ner[ner.index("--paths.dev") + 1] == "ner_dev" and "assemble" in assemble


def write_point(metrics: Path, pipeline: str, size: int, seed: int, upos: float, las: float, ner: float):
    folder = metrics / f"{pipeline}-{size}-s{seed}"
    folder.mkdir(parents=True)
    (folder / "point.json").write_text(
        json.dumps({"pipeline": pipeline, "size": size, "all": False, "seed": seed, "ner_share": 0.5})
    )
    (folder / "ud-newscrawl-heldout.json").write_text(json.dumps({"pos_acc": upos, "dep_las": las}))
    (folder / "ner-wikiann.json").write_text(json.dumps({"ents_f": ner}))


def test_a_point_stopped_part_way_is_trained_again_and_a_finished_one_is_kept(tmp_path, monkeypatch):
    """spaCy leaves a model-best after its first evaluation: a run stopped there must not pass
    for a trained point (its step-0 model would be evaluated as the point). The trainings read
    the base model given with --model."""
    from fillm_spacy.evaluation import learning_curve

    for name in ("train", "dev", "ner_train", "ner_dev"):
        DocBin(docs=sample_docs(12)).to_disk(tmp_path / f"{name}.spacy")
    for name in ("vectors", "tests", "configs"):
        (tmp_path / name).mkdir()
    trainings, base_models = [], []

    def fake_training(command, stop_after_first_evaluation):
        out = Path(command[command.index("--output") + 1])
        (out / "model-best").mkdir(parents=True)
        trainings.append(out.name)
        base_models.append(command[command.index("--components.tok2vec.model.model_name") + 1])
        if stop_after_first_evaluation:
            raise KeyboardInterrupt

    def fake_evaluate(pipelines, test_dir, metrics):
        for name, _ in pipelines:
            (metrics / name).mkdir(parents=True)

    monkeypatch.setattr(learning_curve, "evaluate", fake_evaluate)
    arguments = [
        "run", "--output-dir", str(tmp_path / "lc"), "--sizes", "all", "--ner-shares", "1", "--seeds", "0",
        "--pipelines", "tl_fillm_sm", "--train", str(tmp_path / "train.spacy"), "--dev", str(tmp_path / "dev.spacy"),
        "--ner-train", str(tmp_path / "ner_train.spacy"), "--ner-dev", str(tmp_path / "ner_dev.spacy"),
        "--vectors", str(tmp_path / "vectors"), "--test-dir", str(tmp_path / "tests"),
        "--configs", str(tmp_path / "configs"), "--model", "my-base-model",
    ]  # fmt: skip
    monkeypatch.setattr(learning_curve.subprocess, "run", lambda command, **_: fake_training(command, True))
    assert runner.invoke(app, arguments).exit_code != 0  # stopped (click turns the interrupt into exit 130)
    run_dir = tmp_path / "lc" / "runs" / "tl_fillm_sm-all-s0"
    assert (run_dir / "model-best").exists() and not (run_dir / learning_curve.TRAINED).exists()
    assert not (tmp_path / "lc" / "metrics" / "tl_fillm_sm-all-s0").exists()

    monkeypatch.setattr(learning_curve.subprocess, "run", lambda command, **_: fake_training(command, False))
    result = runner.invoke(app, arguments)
    assert result.exit_code == 0, result.output
    assert trainings == ["tl_fillm_sm-all-s0"] * 2  # trained again from the start
    assert base_models == ["my-base-model"] * 2
    assert (run_dir / learning_curve.TRAINED).exists()
    assert (tmp_path / "lc" / "metrics" / "tl_fillm_sm-all-s0" / "point.json").exists()
    assert runner.invoke(app, arguments).exit_code == 0
    assert len(trainings) == 2  # a finished point is kept


def test_report_writes_table_and_plot(tmp_path):
    metrics = tmp_path / "lc" / "metrics"
    for seed, delta in ((0, 0.0), (1, 0.02)):
        write_point(metrics, "baseline", 150, seed, 0.80 + delta, 0.50, 0.40)
        write_point(metrics, "tl_fillm_lg", 150, seed, 0.85 + delta, 0.60, 0.45)
    result = runner.invoke(
        app,
        [
            "report",
            "--output-dir",
            str(tmp_path / "lc"),
            "--table",
            str(tmp_path / "t.md"),
            "--plot",
            str(tmp_path / "p.png"),
        ],
    )
    assert result.exit_code == 0, result.output
    table = (tmp_path / "t.md").read_text()
    assert "| 150 | 50% | 81.00 [80.00, 82.00] | 86.00 [85.00, 87.00] | +5.00 |" in table
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


def test_report_without_points_and_bad_sizes_are_clear(tmp_path):
    result = runner.invoke(app, ["report", "--output-dir", str(tmp_path)])
    assert result.exit_code == 2 and "run `run` first" in result.output
    assert len(result.output.strip().splitlines()) == 1
    result = runner.invoke(app, ["run", "--output-dir", str(tmp_path), "--sizes", "150,lots"])
    assert result.exit_code == 2 and "'lots'" in result.output and len(result.output.strip().splitlines()) == 1
