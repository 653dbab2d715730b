"""The Ray engine of fillm_spacy.annotate on one local Ray cluster (2 CPUs) for the module: the
same shards as the local engine, and complete output when an actor is killed mid-run.
Ray is in the `test` extra: these tests fail, never skip, where it is missing."""
import os
import signal
import threading

import pytest
import ray

from fillm_spacy.annotate import annotate

from .annotate_helpers import alt_lines, journal_lines, processes_titled, read_output, tiny_tl_fillm, wait_for, write_jsonl

pytestmark = pytest.mark.usefixtures("one_torch_thread")
ACTOR_TITLE = b"ray::MapWorker(MapBatches(RayShardAnnotator))"


@pytest.fixture(scope="module")
def ray_cluster():
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 * 2**20, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, tiny_gemma3_dir):
    return tiny_tl_fillm(tmp_path_factory, tiny_gemma3_dir)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """12 documents of ten ALT sentences each: long enough that a shard takes a while."""
    lines = alt_lines(120)
    rows = [{"id": i // 10, "text": " ".join(lines[i:i + 10])} for i in range(0, 120, 10)]
    return write_jsonl(tmp_path_factory.mktemp("ray-corpus") / "in.jsonl", rows)


@pytest.fixture(scope="module")
def local_output(pipeline, corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("ray-local")
    annotate(str(pipeline), str(corpus), str(out), fmt="conllu", shard_size=1, progress=False)
    return read_output(out)


def test_ray_engine_writes_the_local_engines_shards(ray_cluster, pipeline, corpus, local_output, tmp_path):
    summary = annotate(str(pipeline), str(corpus), str(tmp_path / "out"), fmt="conllu", shard_size=1, engine="ray",
                       n_process=2, progress=False)
    assert summary["documents"] == 12 and summary["shards"] == 12
    assert read_output(tmp_path / "out") == local_output
    assert ray.is_initialized()  # a cluster it did not start is left running


def test_a_ray_actor_killed_mid_run_still_yields_complete_output(ray_cluster, pipeline, corpus, local_output, tmp_path):
    out = tmp_path / "out"
    killed = {}

    def kill_an_actor():
        actors = wait_for(lambda: journal_lines(out) >= 1 and processes_titled(ACTOR_TITLE), timeout=300)
        if actors:
            killed["done_then"] = journal_lines(out)
            os.kill(actors[0], signal.SIGKILL)

    threading.Thread(target=kill_an_actor, daemon=True).start()
    summary = annotate(str(pipeline), str(corpus), str(out), fmt="conllu", shard_size=1, engine="ray", n_process=2,
                       progress=False)
    assert killed and killed["done_then"] < 12, "no actor was killed mid-run"
    assert summary["documents"] == 12 and summary["shards"] == 12
    assert read_output(out) == local_output
