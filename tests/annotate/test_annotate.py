"""fillm_spacy.annotate on a tiny tl_fillm (the real config, tiny random base model): `spacy apply`
on the packaged pipeline, every input and output format, bad input, kill -9 / Ctrl-C and resume,
refused resumes, the local process pool (a killed worker, the multiprocessing hazard), bench."""

import io
import json
import os
import signal
import subprocess
import sys
import threading
from contextlib import redirect_stdout
from pathlib import Path

import pytest
import spacy
from spacy.tokens import Doc, DocBin

from fillm_spacy.annotate import AnnotateError, annotate
from fillm_spacy.annotate import inputs as annotate_inputs
from fillm_spacy.annotate.cli import main as annotate_main
from fillm_spacy.annotate.inputs import InputError, discover_inputs
from fillm_spacy.annotate.manifest import load_manifest
from fillm_spacy.annotate.writers import TEMP_PREFIX

from ..conftest import DATA, sample_docs
from .annotate_helpers import (
    LONG_CORPUS_SETTINGS,
    alt_lines,
    blank_pipeline,
    journal_lines,
    long_corpus,
    long_corpus_reference,
    read_output,
    tiny_tl_fillm,
    wait_for,
    write_jsonl,
)

ROOT = Path(__file__).parent.parent.parent
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, tiny_gemma3_dir) -> Path:
    return tiny_tl_fillm(tmp_path_factory, tiny_gemma3_dir)


@pytest.fixture(scope="module")
def nlp(pipeline):
    return spacy.load(pipeline)


@pytest.fixture(scope="module")
def blank(tmp_path_factory) -> Path:
    return blank_pipeline(tmp_path_factory)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """40 ALT sentences as JSONL with an id each."""
    rows = [{"id": i, "text": text} for i, text in enumerate(alt_lines(40))]
    return write_jsonl(tmp_path_factory.mktemp("corpus") / "alt.jsonl", rows)


@pytest.fixture(scope="module")
def reference(pipeline, corpus, tmp_path_factory):
    """An uninterrupted in-process run: what every interrupted or parallel run must equal."""
    out = tmp_path_factory.mktemp("reference")
    annotate(str(pipeline), str(corpus), str(out), shard_size=2, progress=False)
    return read_output(out)


def annotations(doc):
    return [(t.text, t.pos_, t.tag_, str(t.morph), t.lemma_, t.dep_, t.head.i, t.ent_iob_, t.ent_type_) for t in doc]


def env_one_thread():
    return {**os.environ, "OMP_NUM_THREADS": "1"}


# ------------------------------------------------------------------ spacy apply


def test_spacy_apply_on_a_packaged_tl_fillm_with_two_processes(pipeline, nlp, tmp_path):
    from spacy.cli.package import package

    (tmp_path / "pkg").mkdir()
    package(pipeline, tmp_path / "pkg", name="fillm", version="0.0.1", create_sdist=False, force=True)
    site = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(site),
            str(tmp_path / "pkg" / "tl_fillm-0.0.1"),
        ],
        check=True,
    )
    texts = alt_lines(8)
    source = write_jsonl(tmp_path / "in.jsonl", [{"text": t} for t in texts])
    env = {**env_one_thread(), "PYTHONPATH": str(site)}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "spacy",
            "apply",
            "tl_fillm",
            str(source),
            str(tmp_path / "out.spacy"),
            "--n-process",
            "2",
            "--batch-size",
            "2",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Loaded model tl_fillm" in result.stdout
    docs = list(DocBin().from_disk(tmp_path / "out.spacy").get_docs(nlp.vocab))
    assert [d.text for d in docs] == texts
    assert all(d.has_annotation(a) for d in docs for a in ("DEP", "POS", "MORPH", "LEMMA", "SENT_START"))
    assert [annotations(d) for d in docs] == [annotations(d) for d in nlp.pipe(texts)]


# ------------------------------------------------------------------ inputs


def test_discover_inputs_files_directories_globs(tmp_path):
    for name in ["b/c.jsonl", "a.txt", "d.spacy", "notes.md", ".hidden.txt", "out/shard-000000.jsonl"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x\n")
    found = discover_inputs(str(tmp_path), exclude=tmp_path / "out")
    assert [(f.name, f.format) for f in found] == [("a.txt", "txt"), ("b/c.jsonl", "jsonl"), ("d.spacy", "spacy")]
    assert [f.name for f in discover_inputs(str(tmp_path / "a.txt"))] == ["a.txt"]
    assert [f.format for f in discover_inputs(str(tmp_path / "**" / "*.jsonl"), exclude=tmp_path / "out")] == ["jsonl"]
    for spec, message in [
        (tmp_path / "missing.txt", "no such file"),
        (tmp_path / "notes.md", "unknown input format"),
        (tmp_path / "*.csv", "no .txt, .jsonl or .spacy"),
    ]:
        with pytest.raises(InputError, match=message):
            discover_inputs(str(spec))


def test_every_input_format_in_path_order_with_metadata(pipeline, nlp, tmp_path):
    folder = tmp_path / "in"
    txt = alt_lines(3)
    (folder / "b").mkdir(parents=True)
    (folder / "a.txt").write_text("\n".join(txt) + "\n", encoding="utf8")
    rows = [{"text": t, "id": f"n{i}", "tags": ["x", i]} for i, t in enumerate(alt_lines(6)[3:])]
    write_jsonl(folder / "b" / "c.jsonl", rows)
    gold = sample_docs(2)
    for i, doc in enumerate(gold):
        doc.user_data["doc_id"] = i
    DocBin(docs=gold, store_user_data=True).to_disk(folder / "d.spacy")

    summary = annotate(str(pipeline), str(folder), str(tmp_path / "out"), shard_size=4, progress=False)
    assert summary["documents"] == 8 and summary["shards"] == 2 and not summary["skipped"]
    docs = []
    manifest = load_manifest(tmp_path / "out")
    for shard in manifest["shards"]:
        docs += list(DocBin().from_disk(tmp_path / "out" / shard["file"]).get_docs(nlp.vocab))
    assert [d.text for d in docs] == txt + [r["text"] for r in rows] + [g.text for g in gold]
    # (DocBin's msgpack gives lists back as tuples)
    assert [json.loads(json.dumps(d.user_data)) for d in docs[3:6]] == [
        {"id": r["id"], "tags": r["tags"]} for r in rows
    ]
    assert [d.user_data.get("doc_id") for d in docs[6:]] == [0, 1]
    # a DocBin keeps its tokenization; its annotations are the pipeline's, not the gold ones
    for doc, original in zip(docs[6:], gold):
        expected = nlp(Doc(nlp.vocab, words=[t.text for t in original], spaces=[bool(t.whitespace_) for t in original]))
        assert annotations(doc) == annotations(expected)
    assert [annotations(d) for d in docs[:6]] == [annotations(d) for d in nlp.pipe(txt + [r["text"] for r in rows])]
    assert [i["name"] for i in manifest["inputs"]] == ["a.txt", "b/c.jsonl", "d.spacy"]
    assert all(len(i["sha256"]) == 64 and i["bytes"] > 0 for i in manifest["inputs"])
    assert manifest["shards"][0]["ranges"] == [
        {"input": 0, "records": [0, 3], "bytes": [0, len("\n".join(txt)) + 1]},
        {"input": 1, "records": [0, 1], "bytes": [0, len(json.dumps(rows[0], ensure_ascii=False).encode()) + 1]},
    ]


# ------------------------------------------------------------------ output formats


AWKWARD = ["Kumain  ako\tng mangga.\n\nUmuwi siya sa Maynila.", "  Nagsimula sa espasyo.  ", "Isa.\r\nDalawa."]


def test_conllu_jsonl_and_docbin_outputs_agree_and_conllu_is_valid(pipeline, tmp_path):
    rows = [{"text": t, "n": i} for i, t in enumerate(alt_lines(5) + AWKWARD)]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    outputs = {}
    for fmt in ("conllu", "jsonl", "spacy"):
        annotate(str(pipeline), str(source), str(tmp_path / fmt), fmt=fmt, shard_size=3, progress=False)
        outputs[fmt] = read_output(tmp_path / fmt)

    sentences = outputs["conllu"]
    assert len({s["metadata"]["sent_id"] for s in sentences}) == len(sentences)
    assert [s["metadata"]["newdoc id"] for s in sentences if "newdoc id" in s["metadata"]] == [
        f"doc{i}" for i in range(len(rows))
    ]
    for sentence in sentences:
        tokens = sentence["tokens"]
        assert sum(t["head"] == 0 for t in tokens) == 1, sentence["metadata"]
        assert all(1 <= t["head"] <= len(tokens) for t in tokens if t["head"] != 0)
        assert all(t["form"].strip() and not any(c in t["form"] for c in "\t\n\r") for t in tokens)
        rebuilt = "".join(
            t["form"] + ("" if (t["misc"] or {}).get("SpaceAfter") == "No" else " ") for t in tokens
        ).strip()
        assert sentence["metadata"]["text"] == rebuilt
    by_doc = {}
    for sentence in sentences:
        by_doc.setdefault(sentence["metadata"]["sent_id"].split("-")[0], []).append(sentence)
    for i, row in enumerate(rows):  # the sentences of a document are its words, whitespace aside
        assert " ".join(s["metadata"]["text"] for s in by_doc[f"doc{i}"]).split() == row["text"].split()

    lines = outputs["jsonl"]
    assert [(line["text"], line["meta"]) for line in lines] == [(r["text"], {"n": r["n"]}) for r in rows]
    assert [line["source"] for line in lines] == [{"input": "in.jsonl", "record": i} for i in range(len(rows))]
    docbins = outputs["spacy"]
    assert [d["text"] for d in docbins] == [r["text"] for r in rows]
    assert [d["user_data"] for d in docbins] == [{"n": r["n"]} for r in rows]
    assert [line["doc"]["tokens"] for line in lines] == [d["tokens"] for d in docbins]
    # where a document has no whitespace tokens, CoNLL-U carries the DocBin's parse unchanged
    for i in range(5):
        tokens = [t for s in by_doc[f"doc{i}"] for t in s["tokens"]]
        assert [(t["form"], t["upos"], t["deprel"]) for t in tokens] == [
            (docbins[i]["text"][t["start"] : t["end"]], t["pos"], t["dep"]) for t in docbins[i]["tokens"]
        ]


# ------------------------------------------------------------------ bad input


def test_bad_input_is_counted_by_reason_and_the_job_finishes(pipeline, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.txt").write_bytes(
        b"Kumain ako ng mangga.\n\xff\xfe sira ang UTF-8\nmay\x00NUL\n\n   \nAko ay  kumain.\n"
    )
    write_jsonl(
        folder / "b.jsonl",
        [
            {"text": "Umuwi siya."},
            "hindi JSON {",
            "[1, 2]",
            {"id": 5},
            {"text": 42},
            '{"text": "\\ud800 nag-iisang surrogate", "tag": "\\udfff"}',
            {"text": "may \u0000 NUL", "n": 123456789012345678901234567890},
            "",
        ],
    )
    summary = annotate(str(pipeline), str(folder), str(tmp_path / "out"), fmt="conllu", shard_size=3, progress=False)
    assert summary["skipped"] == {
        "empty": 3,
        "missing_key": 1,
        "not_an_object": 1,
        "not_json": 1,
        "text_not_a_string": 1,
    }
    assert summary["repaired"] == {"big_integers": 1, "invalid_utf8": 1, "lone_surrogates": 1, "nul_bytes": 2}
    assert summary["documents"] == 7
    assert "skipped 7 (empty 3, missing_key 1" in summary["line"] and "repaired 5" in summary["line"]
    manifest = load_manifest(tmp_path / "out")
    assert manifest["counts"]["skipped"] == summary["skipped"] and manifest["counts"]["repaired"] == summary["repaired"]
    examples = {(e["input"], e["record"], e["reason"]) for e in manifest["input_issue_examples"]}
    assert {
        ("a.txt", 1, "invalid_utf8"),
        ("a.txt", 3, "empty"),
        ("b.jsonl", 1, "not_json"),
        ("b.jsonl", 3, "missing_key"),
        ("b.jsonl", 5, "lone_surrogates"),
        ("b.jsonl", 6, "big_integers"),
    } <= examples
    texts = [s["metadata"]["text"] for s in read_output(tmp_path / "out")]
    assert "\ufffd nag-iisang surrogate" in texts and "mayNUL" in texts and "may NUL" in texts


def test_a_one_megabyte_line_is_annotated_whole_and_an_oversized_record_skipped(blank, tmp_path, monkeypatch):
    monkeypatch.setattr(annotate_inputs, "MAX_RECORD_BYTES", 2 * 2**20)
    sentence = "Kumain ako ng mangga. "
    megabyte = (sentence * (2**20 // len(sentence) + 1)).strip()
    assert len(megabyte.encode()) > 2**20 and len(megabyte) > spacy.blank("tl").max_length
    source = tmp_path / "big.txt"
    source.write_text(f"Maikli.\n{megabyte}\n{'x' * (3 * 2**20)}\nHuli.\n", encoding="utf8")
    summary = annotate(str(blank), str(source), str(tmp_path / "out"), progress=False)
    assert summary["skipped"] == {"too_long": 1} and summary["kept"] == {"long_document": 1}
    (shard,) = load_manifest(tmp_path / "out")["shards"]
    docs = list(DocBin().from_disk(tmp_path / "out" / shard["file"]).get_docs(spacy.blank("tl").vocab))
    assert [d.text for d in docs] == ["Maikli.", megabyte, "Huli."]
    assert len(docs[1]) > 10000 and sum(1 for _ in docs[1].sents) == megabyte.count(".")


def test_a_long_document_goes_through_the_llm_in_parts(pipeline, tmp_path):
    text = "\n".join(alt_lines(40))
    source = write_jsonl(tmp_path / "in.jsonl", [{"text": text}])
    summary = annotate(str(pipeline), str(source), str(tmp_path / "out"), part_tokens=300, progress=False)
    assert summary["kept"] == {"long_document": 1} and summary["documents"] == 1
    (doc,) = read_output(tmp_path / "out")
    assert doc["text"] == text and len(doc["tokens"]) > 4 * 300
    assert all(t["pos"] and t["dep"] and t["lemma"] for t in doc["tokens"])


def test_lone_surrogates_among_long_documents_with_two_processes_do_not_hang(blank, tmp_path):
    """The hazard seen with nlp.pipe(n_process=2): a text that makes spaCy raise in a worker while
    20k-character documents are in flight. Repaired before any worker sees it; nothing waits for ever."""
    long_text = " ".join(alt_lines(200))[:20000]
    rows = []
    for _i in range(6):
        rows += [{"text": long_text}, '{"text": "\\ud800"}', '{"text": "ok \\ud800 ok"}']
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    result = {}
    worker = threading.Thread(
        target=lambda: result.update(
            annotate(str(blank), str(source), str(tmp_path / "out"), n_process=2, shard_size=2, progress=False)
        )
    )
    worker.start()
    worker.join(timeout=300)
    assert not worker.is_alive(), "the annotator hung"
    assert result["documents"] == 18 and result["repaired"] == {"lone_surrogates": 12}
    assert [d["text"] for d in read_output(tmp_path / "out")] == [long_text, "\ufffd", "ok \ufffd ok"] * 6


# ------------------------------------------------------------------ interruption and resume


def cli_args(pipeline, corpus, out):
    return [str(pipeline), str(corpus), str(out), "--shard-size", "2", "--no-progress"]


def test_kill_minus_nine_mid_run_then_the_same_command_resumes(pipeline, corpus, reference, tmp_path, capsys):
    out = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-m", "fillm_spacy.annotate", *cli_args(pipeline, corpus, out)],
        env=env_one_thread(),
        stderr=subprocess.DEVNULL,
    )
    try:
        assert wait_for(lambda: journal_lines(out) >= 2, timeout=300), "no shard was finished"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        process.kill()
    manifest = load_manifest(out)
    assert manifest["status"] == "running"
    finished = len(list(out.glob("shard-*.spacy")))
    assert 2 <= finished < len(manifest["shards"]), "the run was not killed mid-way"

    annotate_main(cli_args(pipeline, corpus, out))
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("annotated 40 documents") and "shard(s) were already done" in line
    assert read_output(out) == reference
    assert not list(out.glob(f"{TEMP_PREFIX}*")) and not (out / "progress.jsonl").exists()


def test_ctrl_c_then_the_same_command_resumes(pipeline, corpus, reference, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    from fillm_spacy.annotate import job

    record = job.append_journal

    def record_then_press_ctrl_c(directory, entry):
        # a real SIGINT, sent once the first shard is recorded: Python raises KeyboardInterrupt in
        # this (main) thread at once, so the run cannot finish first (a watcher thread could lose
        # that race on a loaded machine)
        record(directory, entry)
        monkeypatch.setattr(job, "append_journal", record)
        os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(job, "append_journal", record_then_press_ctrl_c)
    with pytest.raises(SystemExit) as stopped:
        annotate_main(cli_args(pipeline, corpus, out))
    assert stopped.value.code == 130
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert message.startswith("interrupted:") and "the same command continues" in message
    assert load_manifest(out)["status"] == "running"
    annotate_main(cli_args(pipeline, corpus, out))
    assert read_output(out) == reference


def test_changed_input_model_or_settings_is_refused_and_force_starts_over(pipeline, tmp_path, capsys):
    source = tmp_path / "in.txt"
    source.write_text("\n".join(alt_lines(4)) + "\n", encoding="utf8")
    out = tmp_path / "out"
    first = annotate(str(pipeline), str(source), str(out), shard_size=2, progress=False)
    again = annotate(str(pipeline), str(source), str(out), shard_size=2, progress=False)
    assert again["resumed_shards"] == first["shards"] == 2 and again["run_words"] == 0

    other_model = tmp_path / "model"
    import shutil

    shutil.copytree(pipeline, other_model)
    meta = json.loads((other_model / "meta.json").read_text())
    (other_model / "meta.json").write_text(json.dumps({**meta, "version": "9.9.9"}))
    with pytest.raises(AnnotateError, match=r"model changed .* 9\.9\.9"):
        annotate(str(other_model), str(source), str(out), shard_size=2, progress=False)
    with pytest.raises(AnnotateError, match="--format spacy → conllu"):
        annotate(str(pipeline), str(source), str(out), fmt="conllu", shard_size=2, progress=False)
    source.write_text(source.read_text() + "Bagong linya.\n", encoding="utf8")
    with pytest.raises(SystemExit) as refused:
        annotate_main([str(pipeline), str(source), str(out), "--shard-size", "2"])
    assert refused.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error:") and "in.txt changed" in err and "--force" in err
    forced = annotate(str(pipeline), str(source), str(out), shard_size=2, force=True, progress=False)
    assert forced["documents"] == 5 and forced["resumed_shards"] == 0


def test_usage_errors_are_one_line(pipeline, corpus, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the `distributed` extra were not installed
    cases = [
        (
            [str(pipeline), str(corpus), str(tmp_path / "o"), "--engine", "ray"],
            "pip install 'fillm_spacy[distributed]'",
        ),
        ([str(pipeline), str(tmp_path / "nothing.txt"), str(tmp_path / "o")], "no such file or directory"),
        ([str(tmp_path), str(corpus), str(tmp_path / "o")], "not a pipeline directory"),
        ([str(pipeline), str(corpus), str(tmp_path / "o"), "--shard-size", "0"], "--shard-size must be at least 1"),
        ([str(pipeline), str(corpus), str(tmp_path / "o"), "--address", "auto"], "use it with --engine ray"),
    ]
    for args, message in cases:
        with pytest.raises(SystemExit) as stopped:
            annotate_main(args)
        err = capsys.readouterr().err.strip()
        assert stopped.value.code == 2 and len(err.splitlines()) == 1 and message in err, err


def test_one_job_per_output_directory(pipeline, corpus, tmp_path):
    from filelock import FileLock

    out = tmp_path / "out"
    out.mkdir()
    with FileLock(str(out / ".lock")), pytest.raises(AnnotateError, match="another job is writing"):
        annotate(str(pipeline), str(corpus), str(out), progress=False)  # the lock held as by a running job


# ------------------------------------------------------------------ the local process pool


def forkserver_workers():
    """Pids of the annotator's pool workers: children of this process's multiprocessing fork server."""

    def parent(pid):
        try:
            return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            return None

    pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    servers = [p for p in pids if parent(p) == os.getpid() and b"forkserver" in Path(f"/proc/{p}/cmdline").read_bytes()]
    return [p for p in pids if parent(p) in servers]


def test_a_killed_pool_worker_is_replaced_and_the_output_equals_one_process(pipeline, tmp_path_factory, tmp_path):
    reference = long_corpus_reference(tmp_path_factory, pipeline)
    out = tmp_path / "out"
    killed = {}

    def kill_a_worker():
        workers = wait_for(lambda: journal_lines(out) >= 1 and forkserver_workers(), timeout=300)
        if workers:
            killed["done_then"] = journal_lines(out)
            os.kill(workers[0], signal.SIGKILL)

    threading.Thread(target=kill_a_worker, daemon=True).start()
    summary = annotate(
        str(pipeline), str(long_corpus(tmp_path_factory)), str(out), n_process=2, progress=False, **LONG_CORPUS_SETTINGS
    )
    assert killed and killed["done_then"] < 12, "no worker was killed mid-run"
    assert summary["documents"] == 12
    assert read_output(out) == reference


# ------------------------------------------------------------------ bench


def test_scaling_ratios_per_engine_and_against_local():
    from fillm_spacy.bench.annotate import scaling_ratios

    runs = [
        {"engine": "local", "workers": 1, "words_per_second": 100.0},
        {"engine": "local", "workers": 2, "words_per_second": 180.0},
        {"engine": "ray", "workers": 1, "words_per_second": 90.0},
        {"engine": "ray", "workers": 2, "words_per_second": 171.0},
        {"engine": "ray", "workers": 4, "error": "failed"},
    ]
    assert scaling_ratios(runs) == {"local_2_over_1": 1.8, "ray_2_over_1": 1.9, "ray_1_over_local_1": 0.9}


def test_bench_annotate_reports_words_per_second_and_scaling(blank):
    from fillm_spacy.bench.cli import main as bench_main

    stdout = io.StringIO()
    with redirect_stdout(stdout):
        bench_main(
            [
                "annotate",
                "--pipeline",
                str(blank),
                "--texts",
                str(DATA / "alt-sample.txt"),
                "--lines",
                "120",
                "--engine",
                "local",
                "--workers",
                "1",
                "--workers",
                "2",
                "--shard-size",
                "20",
            ]
        )
    result = json.loads(stdout.getvalue().strip().splitlines()[-1])
    runs = result["runs"]
    assert [(r["engine"], r["workers"], r["documents"]) for r in runs] == [("local", 1, 120), ("local", 2, 120)]
    assert runs[0]["words"] == runs[1]["words"] == sum(len(spacy.blank("tl")(t)) for t in alt_lines(120))
    assert all(r["words_per_second"] > 0 and r["shards"] == 6 for r in runs)
    assert result["ratios"] == {"local_2_over_1": round(runs[1]["words_per_second"] / runs[0]["words_per_second"], 3)}
    assert result["machine"]["cpus"] >= 1
