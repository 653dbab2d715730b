"""The Ray engine (`--engine ray`, extra `distributed`): Ray Data reads each pending shard's input
ranges (one row per shard), `map_batches` hands each shard to an actor of a fixed pool
(`--n-process` actors, each holding one loaded pipeline, so one base LLM per actor; one GPU per
actor with `--gpu-id`), and the driver writes the returned shards and the journal, so the output
is the local engine's, shard for shard.

Ray Data restarts an actor that dies and retries its shard; shards already written are never
redone, and a shard delivered twice by a retry is written once. Inputs must be readable at the same path on every node (a
shared filesystem); the output is written by the driver alone. The driver's waits are bounded:
it reads results from a queue with a timeout, and an actor stuck in one shard ends itself.
"""

import functools
import json
import queue
import threading
import time
from typing import Dict, List, Optional

from .errors import AnnotateError
from .inputs import Record
from .local import LOAD_ALLOWANCE_SECONDS, POLL_SECONDS, OnDone, OnProgress, one_line, write_and_record
from .worker import Job, shard_records

MISSING = "--engine ray needs Ray: pip install 'fillm_spacy[distributed]' (or pip install 'ray[data]')"


def import_ray():
    try:
        import ray
        import ray.data
    except ImportError:
        raise AnnotateError(MISSING) from None
    return ray


def read_shard_row(row: Dict, job: Job, shards: Dict[int, Dict]) -> Dict:
    """A Ray Data map: one shard's records, read from the inputs on whichever node runs it."""
    import srsly

    shard = shards[int(row["shard"])]
    records = [list(record) for record in shard_records(job, shard)]
    return {"shard": shard["index"], "first_document": shard["first_document"], "records": srsly.msgpack_dumps(records)}


class RayShardAnnotator:
    """The actor class of `map_batches`: loads the pipeline once, annotates one shard a call.
    Use `for_job`: the job travels with the class, not as constructor arguments in the object
    store (which a restarted actor may no longer find, Ray issue 53727)."""

    job: Job

    def __init__(self):
        # Ray sets CUDA_VISIBLE_DEVICES to the actor's GPU: it is GPU 0 inside the actor.
        self.annotator = self.job.annotator(gpu_id=0 if self.job.gpu_id >= 0 else -1)

    @classmethod
    def for_job(cls, job: Job) -> type:
        return type(cls.__name__, (cls,), {"job": job})

    def __call__(self, batch: Dict) -> Dict:
        import numpy as np
        import srsly

        out: Dict[str, List] = {"shard": [], "payload": [], "stats": []}
        for shard, first, blob in zip(batch["shard"], batch["first_document"], batch["records"]):
            records = [Record(*fields) for fields in srsly.msgpack_loads(bytes(blob))]
            payload, stats = self.annotator.run(records, int(first))
            out["shard"].append(int(shard))
            out["payload"].append(payload)
            out["stats"].append(json.dumps(stats))
        return {
            "shard": np.array(out["shard"], dtype=np.int64),
            "payload": np.array(out["payload"], dtype=object),
            "stats": np.array(out["stats"], dtype=object),
        }


def connect(ray, address: Optional[str]) -> bool:
    """Connect to the cluster at `address`, or start a local one; True when this call started
    Ray (and so must shut it down)."""
    if ray.is_initialized():
        return False
    try:
        if address:
            ray.init(address=address, log_to_driver=True)
        else:
            ray.init(include_dashboard=False, log_to_driver=True)
    except Exception as error:
        raise AnnotateError(
            f"cannot start or reach Ray{' at ' + address if address else ''}: {one_line(error)}"
        ) from error
    return True


def check_resources(ray, n_actors: int, gpu: bool) -> None:
    """A fixed pool the cluster cannot place would wait for ever: refuse it up front."""
    resources = ray.cluster_resources()
    kind, have = ("GPU", resources.get("GPU", 0)) if gpu else ("CPU", resources.get("CPU", 0))
    if have < n_actors:
        raise AnnotateError(f"{n_actors} Ray actor(s) need {n_actors} {kind}(s); the cluster has {have:g}")


def run_ray(
    job: Job, todo: List[Dict], on_done: OnDone, on_progress: OnProgress, n_actors: int, address: Optional[str] = None
) -> None:
    ray = import_ray()
    started = connect(ray, address)
    try:
        check_resources(ray, n_actors, job.gpu_id >= 0)
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the job's own bar counts documents
        shards = {shard["index"]: shard for shard in todo}
        dataset = ray.data.from_items([{"shard": index} for index in shards], override_num_blocks=len(shards))
        dataset = dataset.map(functools.partial(read_shard_row, job=job, shards=shards), num_cpus=0)
        dataset = dataset.map_batches(  # Ray Data restarts dead actors and retries their shards
            RayShardAnnotator.for_job(job),
            batch_size=1,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=n_actors),
            num_cpus=1,
            num_gpus=1 if job.gpu_id >= 0 else None,
        )
        collect(job, dataset, shards, on_done, on_progress)
    finally:
        if started:
            ray.shutdown()


def collect(job: Job, dataset, shards: Dict[int, Dict], on_done: OnDone, on_progress: OnProgress) -> None:
    """Write each shard as it arrives; the dataset is iterated in a thread so that this wait
    has a timeout and Ctrl-C is seen at once."""
    results: queue.Queue = queue.Queue(maxsize=4)
    end = object()

    def iterate():
        try:
            for row in dataset.iter_rows():
                results.put(row)
            results.put(end)
        except BaseException as error:  # handed to the driver's thread
            results.put(error)

    threading.Thread(target=iterate, daemon=True, name="fillm-annotate-ray").start()
    written, last = set(), time.monotonic()
    while True:
        try:
            item = results.get(timeout=POLL_SECONDS)
        except queue.Empty:
            if job.timeout and time.monotonic() - last > job.timeout + LOAD_ALLOWANCE_SECONDS:
                raise AnnotateError(
                    f"no shard came back from Ray in {job.timeout + LOAD_ALLOWANCE_SECONDS:.0f} s"
                ) from None
            continue
        if item is end:
            break
        if isinstance(item, BaseException):
            raise AnnotateError(f"Ray: {one_line(item)}") from item
        index = int(item["shard"])
        if index in written:  # a retried task may deliver a shard twice: write and count it once
            continue
        stats = write_and_record(job, index, bytes(item["payload"]), json.loads(item["stats"]))
        written.add(index)
        last = time.monotonic()
        on_progress(stats["documents"], stats["words"])
        on_done(index, stats)
    missing = sorted(set(shards) - written)
    if missing:
        raise AnnotateError(f"Ray returned no result for shard(s) {missing[:10]}; the same command resumes them")
