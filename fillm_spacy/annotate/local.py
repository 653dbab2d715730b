"""The local engine: shards annotated in this process (`--n-process 1`) or in a pool of worker
processes, each loading the pipeline once and returning whole serialized shards. Workers fork from
a fork server (see worker_context): nothing of this process's threads or memory is inherited.

This process is the only writer of shard files (it holds the output directory's lock; workers
never touch the output directory), so a worker that outlives a killed job cannot overwrite the
output of a job that took the directory over since. And on Linux none outlives it: each worker
asks the kernel for SIGKILL when its parent dies (the fork server, which exits as soon as this
process is gone, however it ended, once no worker holds its "alive" pipe open: each closes its
inherited copy), and a thread in each worker checks that this process is still the one that
started it (a backstop where either mechanism is missing). SIGTERM is Ctrl-C for the command (see cli).

Why not `nlp.pipe(n_process=N)`: when a document makes spaCy's tokenizer raise in a worker while
long documents are in flight, spaCy's multiprocessing can hang for good (the parent in waitpid,
the worker blocked writing to its pipe). Here the parent never passes documents through pipes
(a worker reads its shard's input ranges itself; only a finished shard's bytes come back), text
is repaired before any pipeline sees it, and every wait is bounded: the parent polls, a worker
whose shard runs past the timeout ends itself (faulthandler), and a dead worker's shards are
retried in a fresh pool, at most MAX_ATTEMPTS times, before the job stops with a one-line error.
Ctrl-C (or SIGTERM) ends the workers.
"""

import contextlib
import ctypes
import multiprocessing
import os
import queue
import signal
import sys
import threading
import time
from collections import Counter, deque
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Callable, Dict, List

from .errors import AnnotateError
from .worker import Job, shard_records
from .writers import write_shard

POLL_SECONDS = 0.5
MAX_ATTEMPTS = 3
LOAD_ALLOWANCE_SECONDS = 600  # a worker's first shard also loads the pipeline
# Imported once by the fork server (an ImportError is ignored): what loading tl_fillm imports.
PRELOAD = [
    "fillm_spacy.annotate.worker",
    "spacy",
    "torch",
    "transformers",
    "peft",
    "fillm_spacy.layers.llm_encoder",
    "fillm_spacy.annotate.preload",
]

OnDone = Callable[[int, Dict], None]
OnProgress = Callable[[int, int], None]
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
PARENT_CHECK_SECONDS = 1.0


def write_and_record(job: Job, index: int, payload: bytes, stats: Dict) -> Dict:
    """Write a finished shard (in this process only); its stats with the file's size and sha256."""
    return {**stats, **write_shard(job.shard_path(index), payload)}


def annotate_and_write(job: Job, annotator, shard: Dict, on_batch=None) -> Dict:
    payload, stats = annotator.run(shard_records(job, shard), shard["first_document"], on_batch)
    return write_and_record(job, shard["index"], payload, stats)


def run_in_process(job: Job, todo: List[Dict], on_done: OnDone, on_progress: OnProgress) -> None:
    # No watchdog here: its exit would end the caller's own process (and with it the job),
    # with no pool to redo the shard in; --shard-timeout bounds worker processes.
    annotator = job.annotator(timeout=0)
    for shard in todo:
        on_done(shard["index"], annotate_and_write(job, annotator, shard, on_progress))


# ------------------------------------------------------------------ pool workers (one per process)

_WORKER: Dict = {}


def die_with_parent() -> None:
    """Linux: have the kernel SIGKILL this process when its parent dies (a no-op elsewhere)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # no prctl: an orphan may finish its shard, but writes nothing
        pass


def release_fork_server() -> None:
    """Close this worker's copy of the fork server's "alive" pipe (multiprocessing hands one to
    every child it forks): while any is open, the fork server does not see the job die, does not
    exit, and so the workers' death signal never comes."""
    from multiprocessing import forkserver

    server = getattr(forkserver, "_forkserver", None)
    fd = getattr(server, "_forkserver_alive_fd", None)
    if isinstance(fd, int):
        with contextlib.suppress(OSError):
            os.close(fd)
        server._forkserver_alive_fd = None


def process_identity(pid: int):
    """What tells a process from a later one with the same pid: its start time (Linux), else None
    (the pid alone). Raises ProcessLookupError when there is no such process, or only its zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stream:
            fields = stream.read().rsplit(b")", 1)[1].split()
    except FileNotFoundError:
        raise ProcessLookupError(pid) from None
    except OSError:  # no /proc
        os.kill(pid, 0)
        return None
    if fields[0] in (b"Z", b"X"):
        raise ProcessLookupError(pid)
    return fields[19]


def watch_job(job_pid: int, identity) -> None:
    """A daemon thread: end this worker as soon as the job process is gone."""

    def watch():
        while True:
            time.sleep(PARENT_CHECK_SECONDS)
            try:
                if process_identity(job_pid) == identity:
                    continue
            except ProcessLookupError:
                pass
            os._exit(1)

    threading.Thread(target=watch, daemon=True, name="fillm-annotate-job-watch").start()


def _init_worker(job: Job, progress, threads: int, job_pid: int, job_identity) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and ends the workers
    release_fork_server()
    die_with_parent()
    try:  # also when the job died before prctl took effect (its death signal would not come)
        if process_identity(job_pid) != job_identity:
            os._exit(1)
    except ProcessLookupError:
        os._exit(1)
    watch_job(job_pid, job_identity)
    if "OMP_NUM_THREADS" not in os.environ and "torch" in sys.modules:  # the user's setting wins
        sys.modules["torch"].set_num_threads(threads)
    _WORKER.update(job=job, progress=progress)


def _worker_shard(shard: Dict):
    """(serialized shard, stats): the parent writes it."""
    job = _WORKER["job"]
    if "annotator" not in _WORKER:  # loaded on the first shard: an error reaches the parent as one
        _WORKER["annotator"] = job.annotator()
    progress = _WORKER["progress"]
    return _WORKER["annotator"].run(
        shard_records(job, shard), shard["first_document"], lambda docs, words: progress.put((docs, words))
    )


def stop_pool(executor: ProcessPoolExecutor) -> None:
    """Cancel what has not started and end the workers now (Python < 3.14 has no public call
    for the second part: its terminate_workers() does this)."""
    executor.shutdown(wait=False, cancel_futures=True)
    terminate = getattr(executor, "terminate_workers", None)
    processes = list((getattr(executor, "_processes", None) or {}).values())
    if terminate:
        terminate()
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(timeout=5)


def one_line(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}".strip().splitlines()
    return text[0] if text else type(error).__name__


def worker_context():
    """Workers fork from a fresh single-threaded server process that has imported the heavy
    modules once ("forkserver", Python 3.14's default): as safe as "spawn" (nothing is
    inherited from this process's threads or loaded models), without an import per worker."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context


def run_pool(job: Job, todo: List[Dict], on_done: OnDone, on_progress: OnProgress, n_process: int) -> None:
    context = worker_context()
    progress = context.Queue()
    threads = max(1, (os.cpu_count() or 1) // n_process)

    def new_pool() -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            n_process,
            mp_context=context,
            initializer=_init_worker,
            initargs=(job, progress, threads, os.getpid(), process_identity(os.getpid())),
        )

    pending = deque(todo)
    running: Dict = {}  # future -> shard
    attempts: Counter = Counter()
    executor = new_pool()
    last_done = time.monotonic()

    def settle(future) -> bool:
        """Record a finished shard; False when its worker died (the shard goes back in line)."""
        shard = running.pop(future)
        try:
            payload, stats = future.result()
        except BrokenProcessPool:
            pending.appendleft(shard)
            attempts[shard["index"]] += 1
            return False
        except Exception as error:
            raise AnnotateError(f"shard {shard['index']}: {one_line(error)}") from error
        on_done(shard["index"], write_and_record(job, shard["index"], payload, stats))
        return True

    try:
        while pending or running:
            broken = False
            try:
                while pending and len(running) < 2 * n_process:
                    shard = pending.popleft()
                    running[executor.submit(_worker_shard, shard)] = shard
            except BrokenProcessPool:  # a worker died before its future said so
                pending.appendleft(shard)
                broken = True
            finished, _ = wait(list(running), timeout=0 if broken else POLL_SECONDS, return_when=FIRST_COMPLETED)
            drain(progress, on_progress)
            for future in finished:
                if settle(future):
                    last_done = time.monotonic()
                else:
                    broken = True
            if broken:  # every shard still in flight died with the pool: keep the results that came
                for future in list(running):
                    if future.done() and future.exception() is None:
                        settle(future)
                    else:
                        pending.appendleft(running.pop(future))
                        attempts[pending[0]["index"]] += 1
                failed = sorted(i for i, n in attempts.items() if n >= MAX_ATTEMPTS)
                if failed:
                    raise AnnotateError(
                        f"a worker died {MAX_ATTEMPTS} times with shard(s) {failed} in flight (out of memory? "
                        f"killed?); the finished shards are kept and the same command resumes"
                    )
                stop_pool(executor)
                executor = new_pool()
            if job.timeout and running and time.monotonic() - last_done > job.timeout + LOAD_ALLOWANCE_SECONDS:
                raise AnnotateError(
                    f"no shard finished in {job.timeout + LOAD_ALLOWANCE_SECONDS:.0f} s: the workers are stuck"
                )
        drain(progress, on_progress)
    finally:
        stop_pool(executor)
        progress.close()


def drain(progress, on_progress: OnProgress) -> None:
    while True:
        try:
            docs, words = progress.get_nowait()
        except queue.Empty:
            return
        on_progress(docs, words)


def run_local(job: Job, todo: List[Dict], on_done: OnDone, on_progress: OnProgress, n_process: int) -> None:
    if n_process <= 1:
        run_in_process(job, todo, on_done, on_progress)
    else:
        run_pool(job, todo, on_done, on_progress, n_process)
