"""fillm_spacy.workflow.data and .vectors (set-up, splits, conversion), load(), and the
project.yml that drives them."""

from pathlib import Path

import pytest
import spacy
from spacy.tokens import DocBin, Span

import fillm_spacy
from fillm_spacy.workflow.data import (
    conllu_sentences,
    convert_tests,
    convert_ud,
    head_lines,
    iob2_to_docs,
    parse_named_paths,
    setup_offline_data,
    split_conllu_heldout,
    split_indices,
    split_ner,
)
from fillm_spacy.workflow.vectors import tokenize_lines, train_floret_vectors

from ..conftest import SAMPLE_CONLLU, sample_texts

PROJECT_DIR = Path(__file__).resolve().parent.parent.parent


# ---------------------------------------------------------------------------------------------
# splits
# ---------------------------------------------------------------------------------------------


def test_head_lines_keeps_the_first_non_empty_lines(tmp_path):
    source = tmp_path / "raw.txt"
    source.write_text("Una.\n\n  \nIkalawa.\nIkatlo.\nIkaapat.", encoding="utf8")
    assert head_lines(source, tmp_path / "out" / "head.txt", 3) == 3
    assert (tmp_path / "out" / "head.txt").read_text(encoding="utf8") == "Una.\nIkalawa.\nIkatlo.\n"
    assert head_lines(source, tmp_path / "all.txt", 10) == 4
    assert (tmp_path / "all.txt").read_text(encoding="utf8").endswith("Ikaapat.\n")


def test_heldout_split_takes_every_nth_sentence():
    text = SAMPLE_CONLLU.read_text(encoding="utf8")
    sentences = conllu_sentences(text)
    kept, held_out = split_conllu_heldout(text, 10)
    kept_s, held_s = conllu_sentences(kept), conllu_sentences(held_out)
    assert held_s == sentences[9::10]
    assert kept_s == [s for i, s in enumerate(sentences) if i % 10 != 9]
    assert len(kept_s) + len(held_s) == len(sentences) == 60
    everything, nothing = split_conllu_heldout(text, 0)
    assert conllu_sentences(everything) == sentences and nothing == ""
    with pytest.raises(ValueError):
        split_conllu_heldout(text, -1)


def test_split_indices_is_a_seeded_partition():
    train, dev, test = split_indices(820, (0.8, 0.1, 0.1), seed=0)
    assert (len(train), len(dev), len(test)) == (656, 82, 82)
    assert sorted(train + dev + test) == list(range(820))
    assert split_indices(820, (0.8, 0.1, 0.1), seed=0) == [train, dev, test]
    assert split_indices(820, (0.8, 0.1, 0.1), seed=1) != [train, dev, test]
    assert train == sorted(train)  # the data's own order inside each part
    with pytest.raises(ValueError):
        split_indices(10, (0.5, 0.4), seed=0)


def test_split_ner_writes_three_disjoint_docbins(tmp_path):
    nlp = spacy.blank("tl")
    docs = []
    for i in range(50):
        doc = nlp.make_doc(f"Si Juan{i} ay nasa Maynila .")
        doc.ents = [Span(doc, 1, 2, label="PER"), Span(doc, 4, 5, label="LOC")]
        docs.append(doc)
    source = tmp_path / "ner.spacy"
    DocBin(docs=docs).to_disk(source)
    paths = split_ner(source, tmp_path / "out", seed=0)
    assert [p.name for p in paths] == ["train.spacy", "dev.spacy", "test.spacy"]
    parts = [list(DocBin().from_disk(p).get_docs(nlp.vocab)) for p in paths]
    assert [len(part) for part in parts] == [40, 5, 5]
    texts = [doc.text for part in parts for doc in part]
    assert sorted(texts) == sorted(doc.text for doc in docs)
    assert all([e.label_ for e in doc.ents] == ["PER", "LOC"] for part in parts for doc in part)


def test_parse_named_paths():
    assert parse_named_paths("newscrawl=a/b.conllu, trg=c.conllu") == [
        ("newscrawl", Path("a/b.conllu")),
        ("trg", Path("c.conllu")),
    ]
    assert parse_named_paths("") == []
    for bad in ("no-equals", "x=", "x=a,x=b", "bad name=a"):
        with pytest.raises(ValueError):
            parse_named_paths(bad)


# ---------------------------------------------------------------------------------------------
# conversion
# ---------------------------------------------------------------------------------------------

UNER_SAMPLE = """# sent_id = 1
# text = Pumunta si Juan dela Cruz sa Maynila.
1\tPumunta\tO\t-\t-
2\tsi\tO\t-\t-
3\tJuan\tB-PER\t-\t-
4\tdela\tI-PER\t-\t-
5\tCruz\tI-PER\t-\t-
6\tsa\tO\t-\t-
7\tMaynila\tB-LOC\t-\t-
8\t.\tO\t-\t-

# sent_id = 2
# text = Ang Ateneo ay nasa Marikina
1\tAng\tO\t-\t-
2\tAteneo\tB-OTH\t-\t-
3\tay\tI-ORG\t-\t-
4\tnasa\tO\t-\t-
5\tMarikina\tB-LOC\t-\t-
"""


def test_iob2_reader_keeps_real_spaces_and_known_labels():
    first, second = iob2_to_docs(UNER_SAMPLE, spacy.blank("tl").vocab)
    assert first.text == "Pumunta si Juan dela Cruz sa Maynila."
    assert [(e.text, e.label_) for e in first.ents] == [("Juan dela Cruz", "PER"), ("Maynila", "LOC")]
    # OTH is dropped; the I-ORG it leaves dangling starts an entity of its own.
    assert [(e.text, e.label_) for e in second.ents] == [("ay", "ORG"), ("Marikina", "LOC")]
    (kept_all,) = iob2_to_docs(UNER_SAMPLE.split("\n\n")[1], spacy.blank("tl").vocab, keep_labels=None)
    assert [(e.text, e.label_) for e in kept_all.ents] == [("Ateneo", "OTH"), ("ay", "ORG"), ("Marikina", "LOC")]


def test_convert_ud_follows_calamancys_protocol(tmp_path):
    sentences = conllu_sentences(SAMPLE_CONLLU.read_text(encoding="utf8"))[:8]
    source = tmp_path / "some-name.conllu"
    source.write_text("\n\n".join(sentences) + "\n\n", encoding="utf8")
    dest = tmp_path / "out" / "fixed.spacy"
    assert convert_ud(source, dest) == 8
    docs = list(DocBin().from_disk(dest).get_docs(spacy.blank("tl").vocab))
    assert [len(list(doc.sents)) for doc in docs] == [1] * 8  # -n 1
    words = [t.text for doc in docs for t in doc]
    assert "itong" in words and "-ng" not in words  # ito + -ng merged (--merge-subtokens)
    assert any("__" in t.tag_ and "=" in t.tag_ for doc in docs for t in doc)  # --morphology
    assert any(t.pos_ == "VERB" and t.morph.get("Aspect") for doc in docs for t in doc)
    assert not list((tmp_path / "out").glob("some-name*"))  # named by dest, not by the source


def test_convert_tests_names_files_by_kind_and_clears_stale_ones(tmp_path):
    uner = tmp_path / "uner.iob2"
    uner.write_text(UNER_SAMPLE, encoding="utf8")
    ner_spacy = tmp_path / "split-test.spacy"
    DocBin(docs=iob2_to_docs(UNER_SAMPLE, spacy.blank("tl").vocab)).to_disk(ner_spacy)
    out = tmp_path / "test"
    out.mkdir()
    (out / "ud-old.spacy").write_bytes(b"stale")
    written = convert_tests("", f"uner-trg={uner},wikiann={ner_spacy}", out)
    assert sorted(p.name for p in out.glob("*.spacy")) == ["ner-uner-trg.spacy", "ner-wikiann.spacy"]
    assert written == [out / "ner-uner-trg.spacy", out / "ner-wikiann.spacy"]
    with pytest.raises(ValueError):
        convert_tests("", "", out)
    with pytest.raises(ValueError):
        convert_tests("", f"x={tmp_path / 'file.txt'}", out)


def test_setup_copies_offline_data_and_holds_out_a_test_set(tmp_path):
    shared = tmp_path / "shared"
    files = {
        "ud/newscrawl-train.conllu": SAMPLE_CONLLU.read_text(encoding="utf8"),
        "ud/newscrawl-dev.conllu": "\n\n".join(conllu_sentences(SAMPLE_CONLLU.read_text(encoding="utf8"))[:3]),
        "ner/wikiann-tl-corrected.spacy": "ner",
        "raw/alt-fil-wikinews.txt": "Isang pangungusap.\n",
        "summarization/ntrex-fil-headlines.jsonl": "{}\n",
        "README.md": "# data\n",
    }
    for name, content in files.items():
        (shared / name).parent.mkdir(parents=True, exist_ok=True)
        (shared / name).write_text(content, encoding="utf8")
    assets = tmp_path / "assets"
    written = setup_offline_data(shared, assets, ud_heldout_every=10)
    assert len(conllu_sentences((assets / "ud/train.conllu").read_text())) == 54
    assert len(conllu_sentences((assets / "ud/test.conllu").read_text())) == 6
    assert (assets / "ud/dev.conllu").exists() and (assets / "shared-data-README.md").exists()
    assert (assets / "raw/alt-fil-wikinews.txt").read_text() == "Isang pangungusap.\n"
    assert set(written) >= {assets / "ud/train.conllu", assets / "ud/test.conllu"}
    # No held-out split: all of train is kept and an old test file does not linger.
    setup_offline_data(shared, assets, ud_heldout_every=0)
    assert len(conllu_sentences((assets / "ud/train.conllu").read_text())) == 60
    assert not (assets / "ud/test.conllu").exists()


def test_setup_without_offline_data_is_a_no_op(tmp_path):
    assert setup_offline_data(tmp_path / "absent", tmp_path / "assets") == []
    assert not (tmp_path / "assets").exists()


# ---------------------------------------------------------------------------------------------
# vectors
# ---------------------------------------------------------------------------------------------


def test_tokenize_lines_uses_spacys_tokenizer():
    assert list(tokenize_lines(["Pumunta siya sa Paris, France.\n", "  \n"])) == ["Pumunta siya sa Paris , France ."]


def test_floret_vectors_load_into_spacy(tmp_path):
    from spacy.training.initialize import convert_vectors

    raw = tmp_path / "raw.txt"
    raw.write_text("\n".join(sample_texts() * 5), encoding="utf8")
    table = train_floret_vectors(raw, tmp_path / "v.floret", dim=16, bucket=500, epochs=1, threads=1, min_count=1)
    nlp = spacy.blank("tl")
    convert_vectors(nlp, table, truncate=0, prune=-1, mode="floret")
    assert nlp.vocab.vectors.mode == "floret"
    assert nlp.vocab.vectors.shape == (500, 16)
    # floret: any string has a vector, built from its character n-grams.
    assert nlp.vocab["pinakamaganda"].vector.any()


# ---------------------------------------------------------------------------------------------
# load() and project.yml
# ---------------------------------------------------------------------------------------------


def test_load_mirrors_calamancy_load(tmp_path):
    nlp = spacy.blank("tl")
    nlp.add_pipe("sentencizer")
    nlp.to_disk(tmp_path / "tl_pipeline")
    loaded = fillm_spacy.load(str(tmp_path / "tl_pipeline"), exclude=["sentencizer"])
    assert loaded.lang == "tl" and loaded.pipe_names == []
    assert fillm_spacy.__version__.count(".") >= 2
    with pytest.raises(OSError):
        fillm_spacy.load("tl_no_such_pipeline")


@pytest.fixture(scope="module")
def project():
    from weasel.util import load_project_config

    return load_project_config(PROJECT_DIR)


def test_project_has_the_agreed_commands_and_workflows(project):
    commands = {c["name"]: c for c in project["commands"]}
    for name in (
        "setup",
        "convert",
        "train-lg",
        "annotate-silver",
        "train",
        "train-sm-gold",
        "train-vectors",
        "train-llm-vectors",
        "train-sm-llm-vectors",
        "train-baseline",
        "train-baseline-novectors",
        "evaluate",
        "compare",
        "package",
        "bench",
    ):
        assert name in commands, name
    for workflow in ("all", "quick"):
        assert set(project["workflows"][workflow]) <= set(commands)
    assert project["workflows"]["all"][0] == project["workflows"]["quick"][0] == "setup"
    for name in (
        "base_model",
        "gpu_id",
        "ud_train",
        "ud_dev",
        "ud_tests",
        "ner_train",
        "ner_dev",
        "ner_tests",
        "raw_text",
        "summarization_pairs",
        "quick_steps",
        "shared_data",
    ):
        assert name in project["vars"], name


def test_project_reads_shared_data_only_in_setup_and_never_fetches(project):
    shared = project["vars"]["shared_data"]
    for command in project["commands"]:
        uses_shared = any(shared in line for line in command["script"])
        assert uses_shared == (command["name"] == "setup"), command["name"]
    assert project["assets"] and all(asset.get("extra") is True for asset in project["assets"])
    # weasel merges two adjacent "${vars.x}" list items into one "a, b" string.
    for command in project["commands"]:
        for path in command.get("deps", []) + command.get("outputs", []):
            assert ", " not in path, (command["name"], path)


def test_project_overrides_reach_the_commands():
    from weasel.util import load_project_config

    project = load_project_config(
        PROJECT_DIR,
        overrides={
            "vars.base_model": "/models/tiny",
            "vars.quick_steps": 7,
            "vars.quick_train_overrides": "--components.tok2vec.model.layers.last 3",
        },
    )
    train_quick = next(c for c in project["commands"] if c["name"] == "train-quick")
    script = " ".join(train_quick["script"])
    assert "--components.tok2vec.model.model_name /models/tiny" in script
    assert "--training.max_steps 7" in script
    assert script.endswith("--components.tok2vec.model.layers.last 3")
    default = next(c for c in load_project_config(PROJECT_DIR)["commands"] if c["name"] == "train-quick")
    assert default["script"][0].endswith("--gpu-id -1 ")  # the empty default adds no argument


def test_in_process_conversion_writes_the_bytes_spacy_convert_writes(tmp_path):
    """calamanCy's protocol is `spacy convert --converter conllu --morphology --merge-subtokens
    --n-sents 1`; convert_ud runs spaCy's converter in process and must write the same DocBin."""
    import subprocess
    import sys

    from fillm_spacy.workflow.data import convert_ud

    command = [sys.executable, "-m", "spacy", "convert", str(SAMPLE_CONLLU), str(tmp_path), "--converter", "conllu"]
    subprocess.run([*command, "--morphology", "--merge-subtokens", "--n-sents", "1"], check=True, capture_output=True)
    n_docs = convert_ud(SAMPLE_CONLLU, tmp_path / "in-process.spacy")
    assert n_docs > 1
    assert (tmp_path / "in-process.spacy").read_bytes() == (tmp_path / f"{SAMPLE_CONLLU.stem}.spacy").read_bytes()
