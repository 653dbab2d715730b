"""Arbitrary input through a saved tl_fillm-shaped pipeline (tiny random base model)."""

from pathlib import Path

import pytest
import spacy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import sample_docs, save_tiny_tl_fillm


@pytest.fixture(scope="module")
def saved_pipeline(tiny_gemma3_dir, tmp_path_factory) -> Path:
    """The real tl_fillm config on the tiny model, trained a few steps and saved."""
    return save_tiny_tl_fillm(tiny_gemma3_dir, tmp_path_factory.mktemp("tl_fillm_tiny"))


@pytest.fixture(scope="module")
def nlp(saved_pipeline):
    return spacy.load(saved_pipeline)


def assert_fully_annotated(doc):
    assert doc.tensor.shape[0] == len(doc)
    for sent in doc.sents:
        roots = [t for t in sent if t.head.i == t.i]
        assert len(roots) == 1, [t.text for t in sent]
        for token in sent:
            assert sent.start <= token.head.i < sent.end
            # following heads from any token reaches the root without a cycle
            seen, node = set(), token
            while node.head.i != node.i:
                assert node.i not in seen
                seen.add(node.i)
                node = node.head
    for token in doc:
        assert token.pos_ != "" and token.dep_ != "" and token.tag_ != ""


AWKWARD = [
    "",
    " ",
    "\n\n\t  ",
    "😀🇵🇭👍🏽",
    "\x00\x01\x1b[31m control \x7f",
    "Kumain ako ng adobo and then I went home, pero umuulan pa rin.",
    "ang " * 10_000,
    "Москва — столица России. 東京は日本の首都です。",
]


@pytest.mark.parametrize("text", AWKWARD, ids=range(len(AWKWARD)))
def test_awkward_texts_are_fully_annotated(nlp, text):
    doc = nlp(text)
    assert doc.text == text
    assert_fully_annotated(doc)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=300))
def test_arbitrary_unicode_never_crashes(nlp, text):
    doc = nlp(text)
    assert doc.text == text
    assert_fully_annotated(doc)


def test_pipe_with_two_processes_matches_one(nlp):
    texts = [doc.text for doc in sample_docs(8)]
    single = [[(t.pos_, t.dep_, t.head.i) for t in doc] for doc in nlp.pipe(texts)]
    double = [[(t.pos_, t.dep_, t.head.i) for t in doc] for doc in nlp.pipe(texts, n_process=2, batch_size=4)]
    assert single == double


def test_missing_base_model_is_one_clear_line(saved_pipeline):
    from fillm_spacy.models.loading import BaseModelNotFound

    with pytest.raises(BaseModelNotFound, match="not available offline"):
        spacy.load(
            saved_pipeline, config={"components": {"tok2vec": {"model": {"model_name": "someone/missing-model"}}}}
        )


def test_long_doc_without_sentence_boundaries_is_parsed_in_bounded_trees(nlp):
    from fillm_spacy.pipeline.parser import MAX_SENTENCE_TOKENS

    with nlp.select_pipes(disable=["senter"]):
        doc = nlp("ang bata " * 1500)
    assert_fully_annotated(doc)
    assert max(len(sent) for sent in doc.sents) <= MAX_SENTENCE_TOKENS


def test_pipeline_for_another_spacy_version_is_a_clear_error(saved_pipeline, tmp_path):
    import shutil

    import srsly

    import fillm_spacy

    copy = tmp_path / "old"
    shutil.copytree(saved_pipeline, copy)
    meta = srsly.read_json(copy / "meta.json")
    meta["spacy_version"] = ">=2.0.0,<2.1.0"
    srsly.write_json(copy / "meta.json", meta)
    with pytest.raises(fillm_spacy.IncompatiblePipeline, match=r"needs spaCy >=2.0.0,<2.1.0 .* pip install"):
        fillm_spacy.load(str(copy))
    assert len(fillm_spacy.load(str(saved_pipeline))("Kumain ako.")) == 3


def test_bench_pipe_uses_the_pipelines_own_batch_size(saved_pipeline, tmp_path):
    from fillm_spacy.bench.measure import measure_pipe

    texts = tmp_path / "texts.txt"
    texts.write_text("Kumain ang bata ng mangga.\n\nUmuulan sa Maynila kahapon.\n", encoding="utf8")
    result = measure_pipe(str(saved_pipeline), str(texts), 10, None, 1, False)
    assert result["batch_size"] == spacy.load(saved_pipeline).batch_size == 256  # configs/tl_fillm_sm.cfg
    assert result["texts"] == 2 and result["words"] == 11  # 6 + 5 tokens
    assert result["words_per_second"] > 0 and result["peak_rss_mb"] > 0
    assert measure_pipe(str(saved_pipeline), str(texts), 1, 4, 1, False)["batch_size"] == 4


def test_bench_pipe_names_the_precision_and_the_cpu(saved_pipeline, tmp_path):
    """Figures from different machines or precisions must never be mixed up."""
    from fillm_spacy.bench.measure import CPU_FLAGS, measure_pipe

    texts = tmp_path / "texts.txt"
    texts.write_text("Kumain ang bata ng mangga.\n", encoding="utf8")
    result = measure_pipe(str(saved_pipeline), str(texts), 1, None, 1, False)
    assert result["precision"] == "float32" and result["cpu"] and result["cores"] >= 1
    assert set(result["cpu_flags"]) <= set(CPU_FLAGS)
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        assert ("avx2" in cpuinfo.read_text().split()) == ("avx2" in result["cpu_flags"])
    # int8 quantizes the process's shared base model in place: `bench pipe --int8` runs it in a process of its own
    from fillm_spacy.bench.measure import encoder_precision

    assert encoder_precision(spacy.load(saved_pipeline), int8=True) == "int8"


def test_load_with_a_precision_sets_the_encoders_and_leaves_other_pipelines_alone(
    saved_pipeline, tmp_path, monkeypatch
):
    import fillm_spacy
    from fillm_spacy.bench.measure import measure_pipe
    from fillm_spacy.layers import precision
    from fillm_spacy.pipeline.quantize import llm_encoder_modules

    monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda: True)
    nlp = fillm_spacy.load(str(saved_pipeline), precision="bfloat16")
    assert [m.precision for m in llm_encoder_modules(nlp)] == ["bfloat16"]
    assert nlp.config["components"]["tok2vec"]["model"]["compute"]["precision"] == "bfloat16"
    texts = tmp_path / "texts.txt"
    texts.write_text("Kumain ang bata ng mangga.\n", encoding="utf8")
    assert measure_pipe(str(saved_pipeline), str(texts), 1, None, 1, False, "auto")["precision"] == "bfloat16"
    monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda: False)
    assert measure_pipe(str(saved_pipeline), str(texts), 1, None, 1, False, "auto")["precision"] == "float32"
    blank = tmp_path / "blank"
    spacy.blank("tl").to_disk(blank)
    assert fillm_spacy.load(str(blank), precision="bfloat16").pipe_names == []


def test_bench_pipe_times_the_second_load_in_a_process_of_its_own(saved_pipeline, tmp_path, monkeypatch):
    """Peak RSS must be that of one loaded pipeline: the warm (second) load runs elsewhere."""
    from fillm_spacy.bench import cli, measure

    loads = []
    real_load = spacy.load
    monkeypatch.setattr(spacy, "load", lambda *args, **kwargs: loads.append(args[0]) or real_load(*args, **kwargs))
    texts = tmp_path / "texts.txt"
    texts.write_text("Kumain ang bata ng mangga.\n", encoding="utf8")
    result = measure.measure_pipe(str(saved_pipeline), str(texts), 10, None, 1, False)
    assert loads == [str(saved_pipeline)] and "load_seconds_base_model_in_memory" not in result
    loads.clear()
    warm = measure.measure_warm_load(str(saved_pipeline))
    assert loads == [str(saved_pipeline)] * 2 and warm["load_seconds_base_model_in_memory"] >= 0

    calls = []  # the command line: one subprocess for the measurement, another for the warm load
    monkeypatch.setattr(
        cli,
        "in_subprocess",
        lambda args: (
            calls.append(args)
            or ({"load_seconds_base_model_in_memory": 0.5} if "--warm-load" in args else {"words_per_second": 100.0})
        ),
    )
    cli.main(["pipe", "--pipeline", str(saved_pipeline), "--texts", str(texts)])
    assert [("--warm-load" in args) for args in calls] == [False, True]
