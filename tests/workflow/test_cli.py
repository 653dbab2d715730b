"""The command lines of fillm_spacy.workflow (data, vectors, llm_vectors) run as project.yml runs
them, on small files; and the Universal NER .iob2 reader on spaCy's IOB utilities."""

from pathlib import Path

import pytest
import spacy
from spacy.tokens import DocBin

from fillm_spacy.workflow import data, llm_vectors, vectors

from ..conftest import DATA, SAMPLE_CONLLU, sample_texts

ROOT = Path(__file__).parent.parent.parent

IOB2 = """# sent_id = a
# text = Nagpulong sina Maria Santos at Jose Reyes sa Lungsod ng Quezon.
1\tNagpulong\tO
2\tsina\tO
3\tMaria\tB-PER
4\tSantos\tI-PER
5\tat\tO
6\tJose\tB-PER
7\tReyes\tI-PER
8\tsa\tO
9\tLungsod\tB-LOC
10\tng\tI-LOC
11\tQuezon\tI-LOC
12\t.\tO

# sent_id = b
# text = Ayon sa PAGASA, lalakas ang bagyo.
1\tAyon\tO
2\tsa\tO
3\tPAGASA\tB-ORG
4\t,\tO
5\tlalakas\tO
6\tang\tO
7\tbagyo\tO
8\t.\tO
"""


def docs_of(path: Path) -> list:
    return list(DocBin().from_disk(path).get_docs(spacy.blank("tl").vocab))


def entities(docs) -> list:
    return [[(e.text, e.label_, e.start, e.end) for e in doc.ents] for doc in docs]


# ------------------------------------------------------------------ the .iob2 reader


def test_an_iob2_file_round_trips_to_its_entity_spans():
    first, second = data.iob2_to_docs(IOB2, spacy.blank("tl").vocab)
    assert first.text == "Nagpulong sina Maria Santos at Jose Reyes sa Lungsod ng Quezon."
    assert second.text == "Ayon sa PAGASA, lalakas ang bagyo."
    assert entities([first, second]) == [
        [("Maria Santos", "PER", 2, 4), ("Jose Reyes", "PER", 5, 7), ("Lungsod ng Quezon", "LOC", 8, 11)],
        [("PAGASA", "ORG", 2, 3)],
    ]
    # every token outside an entity is explicitly O, as gold NER data must be
    assert all(t.ent_iob_ in ("B", "I", "O") for doc in (first, second) for t in doc)
    # and back: the docs' IOB tags are the file's
    tags = [line.split("\t")[2] for line in IOB2.splitlines() if line and not line.startswith("#")]
    assert [f"{t.ent_iob_}-{t.ent_type_}" if t.ent_type_ else "O" for d in (first, second) for t in d] == tags


def test_the_shipped_iob2_test_set_reads_as_before():
    """data/ner-running-text.iob2 (a project test set): ten sentences, their own spaces, PER/ORG/LOC."""
    docs = data.iob2_to_docs(
        (ROOT / "data" / "ner-running-text.iob2").read_text(encoding="utf8"), spacy.blank("tl").vocab
    )
    assert (
        len(docs) == 10
        and docs[0].text == "Nagpulong sina Maria Santos at Jose Reyes sa Lungsod ng Quezon noong Lunes."
    )
    assert entities(docs[:2]) == [
        [("Maria Santos", "PER", 2, 4), ("Jose Reyes", "PER", 5, 7), ("Lungsod ng Quezon", "LOC", 8, 11)],
        [("Department of Health", "ORG", 2, 5), ("Cebu", "LOC", 12, 13)],
    ]
    assert sum(len(doc.ents) for doc in docs) == 25


@pytest.mark.parametrize(
    "line, number, message",
    [
        ("3\tMaria", 5, "expected id, word and tag columns, got '3\\tMaria'"),
        ("3\tMaria\tPER", 5, "not an IOB2 tag: 'PER'"),
        ("3\tMaria\tE-PER", 5, "not an IOB2 tag: 'E-PER'"),
        ("3\tMaria\tB-", 5, "not an IOB2 tag: 'B-'"),
    ],
)
def test_a_malformed_line_is_named_with_its_number(line, number, message):
    broken = IOB2.replace("3\tMaria\tB-PER", line)
    with pytest.raises(ValueError) as raised:
        data.iob2_to_docs(broken, spacy.blank("tl").vocab)
    assert str(raised.value).startswith(f"line {number}: {message}") and "id<TAB>word<TAB>IOB2 tag" in str(raised.value)


def test_convert_tests_reads_iob2_and_a_broken_file_is_one_line(tmp_path, capsys):
    good, broken = tmp_path / "good.iob2", tmp_path / "broken.iob2"
    good.write_text(IOB2, encoding="utf8")
    broken.write_text(IOB2.replace("4\tSantos\tI-PER", "4 Santos I-PER"), encoding="utf8")
    data.main(["convert-tests", "--ud", "", "--ner", f"running-text={good}", "--output-dir", str(tmp_path / "test")])
    assert entities(docs_of(tmp_path / "test" / "ner-running-text.spacy")) == entities(
        data.iob2_to_docs(IOB2, spacy.blank("tl").vocab)
    )
    with pytest.raises(SystemExit) as stopped:
        data.main(["convert-tests", "--ner", f"x={broken}", "--output-dir", str(tmp_path / "test")])
    err = capsys.readouterr().err.strip()
    assert stopped.value.code == 1 and "\n" not in err and "Traceback" not in err
    assert err.startswith(f"Error: {broken}, line 6: expected id, word and tag columns, got '4 Santos I-PER'")
    assert err.endswith("correct the file or leave it out of the NER test sets")


# ------------------------------------------------------------------ workflow.data as project.yml runs it


def test_data_commands_as_project_yml_runs_them(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    # setup: no offline data folder is a no-op
    data.main(["setup", "--shared", str(tmp_path / "absent"), "--assets", "assets", "--ud-heldout-every", "10"])
    assert not (tmp_path / "assets").exists()
    data.main(["convert-ud", str(SAMPLE_CONLLU), "corpus/ud/train.spacy"])
    assert len(docs_of(tmp_path / "corpus/ud/train.spacy")) == 60
    data.main(["split-ner", str(DATA / "wikiann-sample.spacy"), "corpus/ner", "--seed", "0"])
    assert sorted(p.name for p in (tmp_path / "corpus/ner").iterdir()) == ["dev.spacy", "test.spacy", "train.spacy"]
    with caplog.at_level("INFO", logger="fillm_spacy.data"):
        data.main(["split-ner", "", "elsewhere", "--seed", "0"])  # ner_source set to ""
    assert "no source given" in caplog.text and not (tmp_path / "elsewhere").exists()
    data.main(
        [
            "convert-tests",
            "--ud",
            f"newscrawl-heldout={SAMPLE_CONLLU}",
            "--ner",
            f"wikiann=corpus/ner/test.spacy,running-text={ROOT / 'data' / 'ner-running-text.iob2'}",
            "--output-dir",
            "corpus/test",
        ]
    )
    assert sorted(p.name for p in (tmp_path / "corpus/test").iterdir()) == [
        "ner-running-text.spacy",
        "ner-wikiann.spacy",
        "ud-newscrawl-heldout.spacy",
    ]
    (tmp_path / "raw.txt").write_text("Una.\n\nIkalawa.\nIkatlo.\n", encoding="utf8")
    data.main(["head-lines", "raw.txt", "corpus/silver/input.txt", "--lines", "2"])
    assert (tmp_path / "corpus/silver/input.txt").read_text(encoding="utf8") == "Una.\nIkalawa.\n"


def test_data_errors_are_one_line(tmp_path, capsys):
    cases = [
        (["convert-ud", str(tmp_path / "missing.conllu"), str(tmp_path / "out.spacy")], 1, "no such CoNLL-U file"),
        (["convert-tests", "--ud", "no-equals", "--output-dir", str(tmp_path)], 1, "expected name=path"),
        (["head-lines", str(tmp_path / "in.txt"), str(tmp_path / "out.txt")], 2, "--lines"),  # required
        (["head-lines", str(tmp_path / "in.txt"), str(tmp_path / "out.txt"), "--lines", "two"], 2, "--lines"),
        (["convert"], 2, "No such command"),
    ]
    for argv, code, message in cases:
        with pytest.raises(SystemExit) as stopped:
            data.main(argv)
        err = capsys.readouterr().err
        assert stopped.value.code == code and message in err and "Traceback" not in err, err
        if code == 1:
            assert len(err.strip().splitlines()) == 1


# ------------------------------------------------------------------ vectors and llm_vectors


def test_vectors_as_project_yml_runs_them(tmp_path):
    pytest.importorskip("floret")
    raw = tmp_path / "raw.txt"
    raw.write_text("\n".join(sample_texts() * 3), encoding="utf8")
    output = tmp_path / "vectors" / "floret-tl.floret"
    argv = [str(raw), str(output), "--dim", "8", "--bucket", "100", "--epochs", "1", "--threads", "1"]
    vectors.main([*argv, "--min-count", "1", "--lang", "tl"])
    header = output.read_text(encoding="utf8").splitlines()[0].split()
    assert header[:5] == ["100", "8", "3", "5", "2"]  # bucket, dim, minn, maxn, hashCount


def test_vectors_refuses_a_file_without_text_in_one_line(tmp_path, capsys):
    (tmp_path / "empty.txt").write_text("\n \n", encoding="utf8")
    with pytest.raises(SystemExit) as stopped:
        vectors.main([str(tmp_path / "empty.txt"), str(tmp_path / "v.floret"), "--dim", "8", "--bucket", "100"])
    err = capsys.readouterr().err.strip()
    assert stopped.value.code == 1 and err.startswith("Error: ") and "has no text" in err and "\n" not in err


@pytest.mark.parametrize(
    "argv, joined",
    [
        (
            ["raw", "out", "--layers", "4", "8", "12", "--lines", "5000"],
            ["raw", "out", "--layers", "4 8 12", "--lines", "5000"],
        ),
        (["--layers", "4", "8", "12", "raw", "out"], ["--layers", "4 8 12", "raw", "out"]),
        (["raw", "out", "--layers", "4 8 12"], ["raw", "out", "--layers", "4 8 12"]),
        (["raw", "out", "--layers=4,8"], ["raw", "out", "--layers=4,8"]),
        (["raw", "out", "--lines", "12", "--layers"], ["raw", "out", "--lines", "12", "--layers"]),
    ],
)
def test_llm_vectors_takes_layers_as_separate_arguments_too(argv, joined):
    assert llm_vectors.joined_layers(argv) == joined


def test_llm_vectors_as_project_yml_runs_it(tiny_gemma3_dir, tmp_path, one_torch_thread):
    """train-llm-vectors: `--layers ${vars.llm_vectors_layers}` passes "4 8 12" as three arguments."""
    raw = tmp_path / "raw.txt"
    raw.write_text("\n".join(sample_texts()[:12]) + "\n", encoding="utf8")
    summary = llm_vectors.main(
        [str(raw), str(tmp_path / "llm-tl"), "--model", str(tiny_gemma3_dir), "--layers", "1", "3"]
        + ["--lines", "10", "--min-count", "2"]
    )
    assert summary["layers"] == [1, 3] and summary["lines"] == 10 and summary["min_count"] == 2
    assert spacy.load(tmp_path / "llm-tl").vocab.vectors.shape[0] == summary["types"] > 0
