"""fillm_spacy.annotate when things go wrong around it: a job killed while its workers run (they must
die with it and never write into the next job's output), SIGTERM, shards changed on disk before a
resume, JSONL nested too deep, a multi-megabyte line without spaces, and writes that fail (no
directory, no lock file, a full disk). Jobs that are killed run as subprocesses, every wait bounded."""

import contextlib
import errno
import json
import os
import resource
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import List, Set

import pytest
import spacy
from spacy.tokens import Doc

from fillm_spacy.annotate import AnnotateError, annotate
from fillm_spacy.annotate import writers as annotate_writers
from fillm_spacy.annotate.inputs import MAX_DEPTH, repair_value
from fillm_spacy.annotate.manifest import load_manifest
from fillm_spacy.annotate.worker import PART_CHARS, ShardAnnotator, part_bounds, split_long_words, text_bounds
from fillm_spacy.annotate.writers import TEMP_PREFIX, shard_intact, write_atomic

from .annotate_helpers import (
    alt_lines,
    blank_pipeline,
    journal_lines,
    read_output,
    tiny_tl_fillm,
    wait_for,
    write_jsonl,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, tiny_gemma3_dir) -> Path:
    return tiny_tl_fillm(tmp_path_factory, tiny_gemma3_dir)


@pytest.fixture(scope="module")
def blank(tmp_path_factory) -> Path:
    return blank_pipeline(tmp_path_factory)


def env_one_thread():
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def command(*args) -> List[str]:
    return [sys.executable, "-m", "fillm_spacy.annotate", *map(str, args), "--no-progress"]


# ------------------------------------------------------------------ processes


def process_table():
    """{pid: (parent pid, state)} of every process, zombies marked "Z"."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            table[int(entry)] = (int(fields[1]), fields[0])
    return table


def descendants(pid: int) -> Set[int]:
    table = process_table()
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, (parent, _) in table.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pids) -> Set[int]:
    table = process_table()
    return {pid for pid in pids if pid in table and table[pid][1] != "Z"}


def end_processes(pids) -> None:
    """Cleanup: SIGKILL what is left of the processes these tests started, one by one."""
    for pid in alive(pids):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def start_then_stop(args, out: Path, send: int, shards_first: int = 1):
    """Start the command, wait until it has finished `shards_first` shard(s) and its pool runs
    (2 workers), send `send`; (process, the pids below it when the signal was sent)."""
    process = subprocess.Popen(args, env=env_one_thread(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    below: Set[int] = set()
    try:
        started = wait_for(
            lambda: journal_lines(out) >= shards_first and len(descendants(process.pid)) >= 3, timeout=240
        )
        assert started, "the job finished no shard with its pool running"
        assert process.poll() is None, "the job ended before it could be stopped mid-run"
        below = descendants(process.pid)
        process.send_signal(send)
    except BaseException:
        process.kill()
        end_processes(below | descendants(process.pid))
        raise
    return process, below


@pytest.fixture(scope="module")
def corpus_600(tmp_path_factory) -> Path:
    lines = alt_lines(300)
    rows = [{"id": i, "text": lines[i % 300]} for i in range(600)]
    return write_jsonl(tmp_path_factory.mktemp("corpus-600") / "in.jsonl", rows)


def test_a_killed_jobs_workers_die_with_it_and_never_write_into_the_next_jobs_output(pipeline, corpus_600, tmp_path):
    """The orphan reproduction, scaled down: job A (2 workers) SIGKILLed mid-run, job B with
    --force and another shard size into the same directory; A's workers must not outlive A, and
    what is on disk afterwards is exactly B's output."""
    out = tmp_path / "out"
    a, below = start_then_stop(
        command(pipeline, corpus_600, out, "--shard-size", 100, "--n-process", 2), out, signal.SIGKILL
    )
    try:
        a.wait(timeout=30)
        summary = annotate(str(pipeline), str(corpus_600), str(out), shard_size=60, force=True, progress=False)
        assert summary["documents"] == 600 and summary["shards"] == 10
        left = wait_for(lambda: not alive(below), timeout=15)
        assert left, f"job A's processes {sorted(alive(below))} outlived it"
    finally:
        a.kill()
        a.wait(timeout=30)
        end_processes(below)
    manifest = load_manifest(out)
    assert sorted(p.name for p in out.glob("shard-*")) == [s["file"] for s in manifest["shards"]]
    for shard in manifest["shards"]:
        assert shard["stats"]["documents"] == 60 and shard_intact(out / shard["file"], shard["stats"]), shard["file"]
    rows = [json.loads(line) for line in corpus_600.read_text(encoding="utf8").splitlines()]
    assert [d["text"] for d in read_output(out)] == [r["text"] for r in rows]
    assert not list(out.glob(f"{TEMP_PREFIX}*"))


def test_sigterm_stops_the_job_like_ctrl_c_and_the_same_command_resumes(pipeline, corpus_600, tmp_path):
    out = tmp_path / "out"
    args = command(pipeline, corpus_600, out, "--shard-size", 75, "--n-process", 2)
    process, below = start_then_stop(args, out, signal.SIGTERM)
    try:
        _, err = process.communicate(timeout=60)
        assert wait_for(lambda: not alive(below), timeout=15), f"workers {sorted(alive(below))} outlived the job"
    finally:
        process.kill()
        end_processes(below)
    lines = err.decode().strip().splitlines()
    assert process.returncode == 128 + signal.SIGTERM, err.decode()[-2000:]
    assert lines[-1].startswith("interrupted:") and "the same command continues" in lines[-1]
    manifest = load_manifest(out)
    assert manifest["status"] == "running" and not list(out.glob(f"{TEMP_PREFIX}*"))
    done = journal_lines(out)
    assert 1 <= done < len(manifest["shards"])

    summary = annotate(str(pipeline), str(corpus_600), str(out), shard_size=75, progress=False)
    assert summary["resumed_shards"] == done and summary["documents"] == 600
    rows = [json.loads(line) for line in corpus_600.read_text(encoding="utf8").splitlines()]
    docs = read_output(out)
    assert [d["text"] for d in docs] == [r["text"] for r in rows]
    assert all(t["dep"] and t["pos"] for d in docs for t in d["tokens"])


# ------------------------------------------------------------------ resume checks the shard files


@pytest.mark.parametrize("fmt", ["spacy", "jsonl"])
def test_a_truncated_or_altered_shard_is_redone_on_resume(blank, tmp_path, fmt):
    source = tmp_path / "in.txt"
    source.write_text("\n".join(alt_lines(12)) + "\n", encoding="utf8")
    out = tmp_path / "out"
    annotate(str(blank), str(source), str(out), fmt=fmt, shard_size=3, progress=False)
    shards = sorted(out.glob("shard-*"))
    original = [p.read_bytes() for p in shards]
    assert len(shards) == 4
    shards[0].write_bytes(original[0][: len(original[0]) // 2])  # truncated
    altered = bytearray(original[2])
    altered[len(altered) // 2] ^= 0x01  # one bit changed in place: the same size
    shards[2].write_bytes(bytes(altered))

    again = annotate(str(blank), str(source), str(out), fmt=fmt, shard_size=3, progress=False)
    assert again["resumed_shards"] == 2 and again["run_documents"] == 6 and again["documents"] == 12
    assert [p.read_bytes() for p in shards] == original
    assert [d["text"] for d in read_output(out)] == alt_lines(12)


def test_a_journal_entry_is_trusted_only_for_the_shard_file_it_recorded(tmp_path):
    path = tmp_path / "shard-000000.spacy"
    stats = annotate_writers.write_shard(path, b"0123456789")
    assert stats == {"bytes": 10, "sha256": __import__("hashlib").sha256(b"0123456789").hexdigest()}
    assert shard_intact(path, stats)
    assert not shard_intact(path, {"documents": 1})  # a record of an older version: redone
    path.write_bytes(b"0123456780")
    assert not shard_intact(path, stats)
    path.unlink()
    assert not shard_intact(path, stats)


# ------------------------------------------------------------------ deeply nested JSONL


def nested(depth: int) -> str:
    """A JSONL line whose "meta" is `depth` - 1 lists deep (the record itself is level 1)."""
    return '{"text": "Malalim.", "meta": ' + "[" * (depth - 1) + "]" * (depth - 1) + "}"


def test_deeply_nested_records_are_skipped_and_counted_and_the_others_annotated(blank, tmp_path):
    within = '{"text": "Sakto.", "meta": ' + "[" * (MAX_DEPTH - 2) + '"\\ud800"' + "]" * (MAX_DEPTH - 2) + "}"
    source = write_jsonl(
        tmp_path / "in.jsonl",
        [{"text": "Una."}, nested(510), {"text": "Pangalawa."}, nested(5000), within, {"text": "Huli."}],
    )
    json.loads(nested(510))  # json accepts it: it is the repair that must cope
    for fmt in ("spacy", "jsonl"):
        summary = annotate(str(blank), str(source), str(tmp_path / fmt), fmt=fmt, shard_size=2, progress=False)
        assert summary["skipped"] == {"too_deep": 2} and summary["repaired"] == {"lone_surrogates": 1}
        assert [d["text"] for d in read_output(tmp_path / fmt)] == ["Una.", "Pangalawa.", "Sakto.", "Huli."]
    examples = load_manifest(tmp_path / "spacy")["input_issue_examples"]
    assert {(e["record"], e["reason"]) for e in examples} >= {(1, "too_deep"), (3, "too_deep")}


def test_repair_value_is_iterative_and_keeps_order():
    value = {"a": [1, {"b": "x\ud800", "c": 2**70}], "d": (3, [4.5, None, True]), "e": {}}
    reasons: List[str] = []
    assert repair_value(value, reasons) == {
        "a": [1, {"b": "x\ufffd", "c": str(2**70)}],
        "d": [3, [4.5, None, True]],
        "e": {},
    }
    assert sorted(reasons) == ["big_integers", "lone_surrogates"]
    deep = inner = []
    for _ in range(MAX_DEPTH - 1):
        inner.append([])
        inner = inner[0]
    assert repair_value(deep, []) == deep  # at the limit, far past what recursion would allow per level
    with pytest.raises(ValueError, match="nested more than"):
        repair_value([deep], [])


# ------------------------------------------------------------------ a line of megabytes without a space


def test_parts_are_bounded_in_characters_and_the_text_is_kept(blank):
    nlp = spacy.load(blank)
    annotator = ShardAnnotator.__new__(ShardAnnotator)
    annotator.nlp, annotator.part_tokens, annotator.part_chars = nlp, 50, 1000
    from fillm_spacy.annotate.inputs import Record

    texts = ["x" * 3500, "Kumain ako. " * 400, ("a" * 700 + "\n") * 5 + "b" * 2500, "maikli"]
    for text in texts:
        bounds = text_bounds(text, 1000)
        assert "".join(text[a:b] for a, b in bounds) == text and all(0 < b - a <= 1000 for a, b in bounds)
        parts = annotator.parts(Record(0, 0, text, None, None, {}))
        assert "".join(p.text for p in parts) == text
        assert all(len(p.text) <= 1000 and len(p) <= 50 for p in parts)
        joined = Doc.from_docs(parts, ensure_whitespace=False) if len(parts) > 1 else parts[0]
        assert joined.text == text and all(len(t.text) <= 1000 for t in joined)
    assert text_bounds("Kumain ako. " * 400, 1000)[0] == (0, 996)  # after a sentence end, not inside a word
    # a DocBin's words: only a word longer than the bound is split, the text is kept
    words, spaces = split_long_words(["isa", "y" * 2500, "dalawa"], [True, True, False], 1000)
    assert words == ["isa", "y" * 1000, "y" * 1000, "y" * 500, "dalawa"] and spaces == [True, False, False, True, False]
    doc = Doc(nlp.vocab, words=words, spaces=spaces)
    assert all(b - a <= 50 and len(doc[a:b].text_with_ws) <= 1000 for a, b in part_bounds(doc, 50, 1000))


LONG_LINE_SCRIPT = textwrap.dedent("""
    import json, resource, sys, time
    from fillm_spacy.annotate import annotate

    def peak_mb():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    pipeline, small, big, out = sys.argv[1:]
    annotate(pipeline, small, out + "-small", progress=False)  # the pipeline loaded, short documents
    baseline = peak_mb()
    start = time.perf_counter()
    summary = annotate(pipeline, big, out, progress=False)
    print(json.dumps({"seconds": time.perf_counter() - start, "baseline_mb": baseline, "peak_mb": peak_mb(),
                      "documents": summary["documents"], "kept": summary["kept"]}))
""")


def test_a_megabyte_line_without_spaces_costs_bounded_time_and_memory(pipeline, tmp_path):
    """One spaceless line of 1 MB (1 MB rather than 5: the tiny model takes ~0.3 s per 20,000 characters
     on one core, so 5 MB takes about a minute) through the real tl_fillm config, in parts of
    at most --part-chars characters, the text kept exactly. Measured on a loaded 2-core machine: ~17 s
    and no more peak memory than annotating short documents (before: one 1 MB token through the
    encoder whole, ~420 MB more; 5 MB took 321 s and 1.97 GB)."""
    line = "x" * 2**20
    small, source = tmp_path / "small.txt", tmp_path / "in.txt"
    small.write_text("Maikli.\nHuli.\n", encoding="utf8")
    source.write_text(f"Maikli.\n{line}\nHuli.\n", encoding="utf8")
    result = subprocess.run(
        [sys.executable, "-c", LONG_LINE_SCRIPT, str(pipeline), str(small), str(source), str(tmp_path / "out")],
        env=env_one_thread(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    grown = measured["peak_mb"] - measured["baseline_mb"]
    print(
        f"1 MB spaceless line: {measured['seconds']:.1f} s, peak RSS {measured['peak_mb']:.0f} MB, {grown:.0f} MB over short documents"
    )
    assert measured["documents"] == 3 and measured["kept"] == {"long_document": 1}
    assert measured["seconds"] < 180 and grown < 200
    docs = read_output(tmp_path / "out")
    assert [d["text"] for d in docs] == ["Maikli.", line, "Huli."]
    assert (
        all(t["end"] - t["start"] <= PART_CHARS for t in docs[1]["tokens"])
        and len(docs[1]["tokens"]) >= 2**20 // PART_CHARS
    )
    assert all(t["pos"] and t["dep"] for t in docs[1]["tokens"])


# ------------------------------------------------------------------ writes that fail


def run_cli(args, limit_bytes=None, timeout=120):
    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run(
        args,
        env=env_one_thread(),
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=limit_file_size if limit_bytes else None,
    )


def assert_one_line_error(result, *fragments):
    err = result.stderr.strip()
    assert result.returncode == 2 and len(err.splitlines()) == 1 and err.startswith("error:"), result.stderr[-3000:]
    assert "Traceback" not in err and all(f in err for f in fragments), err


def test_an_output_directory_that_cannot_be_created_or_locked_is_one_line(blank, tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("Kumain ako.\n", encoding="utf8")
    (tmp_path / "a-file").write_text("")
    # tests run as root, whom chmod does not stop: a path under a regular file, and /proc
    assert_one_line_error(
        run_cli(command(blank, source, tmp_path / "a-file" / "out")), "cannot create the output directory"
    )
    assert_one_line_error(run_cli(command(blank, source, "/proc")), "cannot create the lock file /proc/.lock")


def test_a_full_disk_is_one_line_and_leaves_no_temporary_file(blank, tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("\n".join(alt_lines(60)) + "\n", encoding="utf8")
    out = tmp_path / "out"
    # the manifest fits under the limit, a shard of 30 documents in JSONL (with every token) does not
    result = run_cli(command(blank, source, out, "--format", "jsonl", "--shard-size", 30), limit_bytes=16 * 1024)
    assert_one_line_error(result, "cannot write", "shard-000000.jsonl", "File too large", "resumes")
    assert load_manifest(out)["status"] == "running"
    assert not list(out.glob(f"{TEMP_PREFIX}*")) and not list(out.glob("shard-*"))
    summary = annotate(str(blank), str(source), str(out), fmt="jsonl", shard_size=30, progress=False)  # room again
    assert summary["documents"] == 60 and summary["resumed_shards"] == 0


def test_write_atomic_removes_its_temporary_file_when_the_write_fails(tmp_path, monkeypatch):
    def no_space(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(annotate_writers.os, "fsync", no_space)
    with pytest.raises(AnnotateError, match="cannot write .*shard-000000.spacy: No space left on device"):
        write_atomic(tmp_path / "shard-000000.spacy", b"x" * 1000)
    assert list(tmp_path.iterdir()) == []
