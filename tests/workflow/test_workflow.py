"""The `quick` project workflow end to end: tiny base model, tiny copies of the offline data."""

import shutil
import subprocess
import sys
from pathlib import Path

import spacy
import srsly
from spacy.tokens import DocBin

ROOT = Path(__file__).parent.parent.parent
DATA = Path(__file__).parent.parent / "data"


def make_offline_data(folder: Path) -> Path:
    """The shared-data layout `setup` expects, filled with the small samples in tests/data."""
    layout = {
        "ud/newscrawl-train.conllu": "newscrawl-sample.conllu",
        "ud/newscrawl-dev.conllu": "newscrawl-dev-sample.conllu",
        "ner/wikiann-tl-corrected.spacy": "wikiann-sample.spacy",
        "raw/alt-fil-wikinews.txt": "alt-sample.txt",
        "summarization/ntrex-fil-headlines.jsonl": "ntrex-sample.jsonl",
    }
    for dest, source in layout.items():
        (folder / dest).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(DATA / source, folder / dest)
    (folder / "README.md").write_text("test samples of the offline data\n")
    return folder


def test_quick_workflow_trains_evaluates_and_compares(tmp_path, tiny_gemma3_dir):
    project = tmp_path / "project"
    project.mkdir()
    shutil.copyfile(ROOT / "project.yml", project / "project.yml")
    shutil.copytree(ROOT / "configs", project / "configs")
    shutil.copytree(ROOT / "data", project / "data")
    offline = make_offline_data(tmp_path / "shared")
    command = [
        sys.executable,
        "-m",
        "spacy",
        "project",
        "run",
        "quick",
        str(project),
        "--vars.shared_data",
        str(offline),
        "--vars.base_model",
        str(tiny_gemma3_dir),
        "--vars.quick_steps",
        "6",
        "--vars.quick_eval_frequency",
        "3",
        "--vars.quick_vectors_dim",
        "10",
        "--vars.quick_vectors_bucket",
        "1000",
        "--vars.n_resamples",
        "200",
        "--vars.quick_silver_lines",
        "5",
        # the tiny model has 3 layers; tl_fillm_lg reads layers 4, 8 and 12 of Gemma 3 270M
        "--vars.lg_first_layer",
        "1",
        "--vars.lg_last_layer",
        "3",
        "--vars.lg_layer_stride",
        "2",
    ]
    result = subprocess.run(command, cwd=project, capture_output=True, text=True, timeout=1500)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    for name in ("tl_fillm_sm", "tl_fillm_lg"):
        nlp = spacy.load(project / "training" / "quick" / name / "model-best")
        assert nlp.pipe_names == [
            "tok2vec",
            "senter",
            "tagger",
            "morphologizer",
            "trainable_lemmatizer",
            "parser",
            "ner",
        ]
        doc = nlp("Kumain ang bata ng mangga sa Maynila.")
        assert all(t.pos_ and t.dep_ for t in doc)
    # tl_fillm_lg's silver annotation of the raw text reached tl_fillm_sm's training data
    silver = list((project / "corpus" / "quick" / "silver" / "alt").rglob("*.spacy"))
    silver_docs = [doc for path in silver for doc in DocBin().from_disk(path).get_docs(spacy.blank("tl").vocab)]
    assert len(silver_docs) == 5 and all(doc.has_annotation("DEP") and doc.has_annotation("POS") for doc in silver_docs)
    sm_config = spacy.util.load_config(project / "training" / "quick" / "tl_fillm_sm" / "model-best" / "config.cfg")
    lg_config = spacy.util.load_config(project / "training" / "quick" / "tl_fillm_lg" / "model-best" / "config.cfg")
    assert sm_config["paths"]["silver"] == "corpus/quick/silver/alt" and lg_config["paths"]["silver"] is None

    compare = (project / "metrics" / "quick" / "compare.md").read_text()
    assert "tl_fillm_sm vs calamancy_baseline" in compare and "tl_fillm_lg vs calamancy_baseline" in compare
    for system in ("tl_fillm_sm", "tl_fillm_lg", "calamancy_baseline"):
        ud = srsly.read_json(project / "metrics" / "quick" / system / "ud-newscrawl-heldout.json")
        ner = srsly.read_json(project / "metrics" / "quick" / system / "ner-wikiann.json")
        assert 0.0 <= ud["dep_las"] <= ud["dep_uas"] <= 1.0 and 0.0 <= ud["pos_acc"] <= 1.0
        assert ner["ents_f"] is not None and 0.0 <= ner["ents_f"] <= 1.0
        running = srsly.read_json(project / "metrics" / "quick" / system / "ner-running-text.json")
        assert running["ents_f"] is not None and 0.0 <= running["ents_f"] <= 1.0
