"""The Ray engine of fillm_spacy.annotate on one local Ray cluster (2 CPUs) for the module.
Ray is in the `test` extra: these tests fail, never skip, where it is missing."""

import os
import signal
import threading

import pytest
import ray

from fillm_spacy.annotate import annotate

from .annotate_helpers import (
    LONG_CORPUS_SETTINGS,
    journal_lines,
    long_corpus,
    long_corpus_reference,
    processes_titled,
    read_output,
    tiny_tl_fillm,
    wait_for,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")
ACTOR_TITLE = b"ray::MapWorker(MapBatches(RayShardAnnotator))"


@pytest.fixture(scope="module")
def ray_cluster():
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 * 2**20, log_to_driver=False)
    yield
    ray.shutdown()


def test_two_ray_actors_one_killed_mid_run_write_the_local_engines_shards(
    ray_cluster, tmp_path_factory, tiny_gemma3_dir, tmp_path
):
    """Both acceptance checks in one run (each new Ray Data run starts its actors, and an actor's
    start costs the most here): a local cluster with 2 CPUs gives the local engine's output, and
    does so although one actor is killed while most shards are still to do."""
    pipeline = tiny_tl_fillm(tmp_path_factory, tiny_gemma3_dir)
    reference = long_corpus_reference(tmp_path_factory, pipeline)
    out = tmp_path / "out"
    killed = {}

    def kill_an_actor():
        # generous: on a loaded 2-core machine the first shard took minutes (actor start-up)
        actors = wait_for(lambda: journal_lines(out) >= 1 and processes_titled(ACTOR_TITLE), timeout=1500)
        if actors:
            killed["done_then"] = journal_lines(out)
            os.kill(actors[0], signal.SIGKILL)

    threading.Thread(target=kill_an_actor, daemon=True).start()
    summary = annotate(
        str(pipeline),
        str(long_corpus(tmp_path_factory)),
        str(out),
        engine="ray",
        n_process=2,
        progress=False,
        **LONG_CORPUS_SETTINGS,
    )
    assert killed and killed["done_then"] < 12, "no actor was killed mid-run"
    assert summary["documents"] == 12 and summary["shards"] == 12 and summary["resumed_shards"] == 0
    assert read_output(out) == reference
    assert ray.is_initialized()  # a cluster the job did not start is left running
