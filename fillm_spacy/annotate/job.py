"""One annotation job from start to end: check the options, plan the shards, compare with what the
output directory already holds (resume, refuse, or start over with force), run an engine over the
unfinished shards, then complete the manifest and summarize. `annotate()` is the Python API behind
`python -m fillm_spacy.annotate`.
"""

import contextlib
import os
from pathlib import Path
from typing import Dict, Optional

from .errors import AnnotateError, Interrupted
from .inputs import REPAIRED, SKIPPED, InputError, discover_inputs
from .manifest import (
    JOURNAL,
    MANIFEST,
    append_journal,
    describe_model,
    differences,
    load_manifest,
    new_manifest,
    read_journal,
    remove_journal,
    write_manifest,
)
from .plan import plan_shards
from .progress import Progress, summary_line
from .worker import PART_CHARS, Job
from .writers import EXTENSIONS, TEMP_PREFIX, shard_file_name, shard_intact

FORMATS = tuple(EXTENSIONS)
LOCK = ".lock"
ENGINES = ("local", "ray")
ANNOTATION_SKIPPED = {"annotation_error": "the pipeline raised on the document"}
ANNOTATION_KEPT = {
    "long_document": "annotated in parts of at most --part-tokens tokens and --part-chars characters, joined back"
}


def check_options(
    fmt: str,
    engine: str,
    shard_size: int,
    n_process: int,
    batch_size: Optional[int],
    part_tokens: int,
    part_chars: int,
    shard_timeout: float,
    address: Optional[str],
) -> None:
    problems = [
        (address is not None and engine != "ray", "--address names a Ray cluster: use it with --engine ray"),
        (fmt not in FORMATS, f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}"),
        (engine not in ENGINES, f"--engine must be one of {', '.join(ENGINES)}, not {engine!r}"),
        (shard_size < 1, f"--shard-size must be at least 1, not {shard_size}"),
        (n_process < 1, f"--n-process must be at least 1, not {n_process}"),
        (batch_size is not None and batch_size < 1, f"--batch-size must be at least 1, not {batch_size}"),
        (part_tokens < 16, f"--part-tokens must be at least 16, not {part_tokens}"),
        (part_chars < 100, f"--part-chars must be at least 100, not {part_chars}"),
        (shard_timeout < 0, f"--shard-timeout must be 0 (none) or more, not {shard_timeout}"),
    ]
    for failed, message in problems:
        if failed:
            raise AnnotateError(message)


def output_files(directory: Path):
    for ext in set(EXTENSIONS.values()):
        yield from directory.glob(f"shard-*.{ext}")


def remove(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as error:
        raise AnnotateError(
            f"cannot remove {path}: {error.strerror or error} (is the output directory writable?)"
        ) from None


def start_over(directory: Path) -> None:
    """Remove what a job writes (shards, manifest, journal, temporary files), nothing else."""
    for path in [
        *output_files(directory),
        *directory.glob(f"{TEMP_PREFIX}*"),
        directory / MANIFEST,
        directory / JOURNAL,
    ]:
        remove(path)


def finished_shards(directory: Path, old: Optional[Dict], manifest: Dict) -> Dict[int, Dict]:
    """Shards whose stats were recorded (journal, or a completed manifest) and whose file is
    still the one recorded (size and sha256): a shard truncated or altered since is redone."""
    fmt = manifest["settings"]["format"]
    recorded = {s["index"]: s["stats"] for s in (old or {}).get("shards", []) if s.get("stats")}
    recorded.update(read_journal(directory))
    return {
        i: stats
        for i, stats in recorded.items()
        if i < len(manifest["shards"]) and shard_intact(directory / shard_file_name(i, fmt), stats)
    }


def sum_counts(*counters: Dict[str, int]) -> Dict[str, int]:
    total: Dict[str, int] = {}
    for counter in counters:
        for key, n in counter.items():
            total[key] = total.get(key, 0) + n
    return dict(sorted(total.items()))


def annotate(
    model: str,
    input: str,
    output_dir: str,
    *,
    fmt: str = "spacy",
    text_key: str = "text",
    batch_size: Optional[int] = None,
    n_process: int = 1,
    shard_size: int = 1000,
    engine: str = "local",
    address: Optional[str] = None,
    gpu_id: int = -1,
    force: bool = False,
    part_tokens: int = 10000,
    part_chars: int = PART_CHARS,
    shard_timeout: float = 3600,
    progress: Optional[bool] = None,
) -> Dict:
    """Annotate every document of `input` with the pipeline `model` into numbered shards and a
    manifest in `output_dir`, continuing an interrupted run of the same job; returns the summary
    (its "line" is what the command prints). Raises AnnotateError (one line) when it cannot."""
    check_options(fmt, engine, shard_size, n_process, batch_size, part_tokens, part_chars, shard_timeout, address)
    if engine == "ray":
        from .ray_engine import import_ray

        import_ray()  # before the planning pass: a missing extra is said at once
    model_info = describe_model(model)  # a missing pipeline is said before the planning pass
    directory = Path(output_dir)
    if directory.exists() and not directory.is_dir():
        raise AnnotateError(f"{directory} exists and is not a directory")
    try:
        files = discover_inputs(input, exclude=directory)
    except InputError as error:
        raise AnnotateError(str(error)) from None
    plan = plan_shards(files, text_key, shard_size)
    settings = {
        "format": fmt,
        "shard_size": shard_size,
        "text_key": text_key,
        "batch_size": batch_size,
        "part_tokens": part_tokens,
        "part_chars": part_chars,
    }

    job = Job(
        model, fmt, tuple(files), text_key, batch_size, part_tokens, part_chars, gpu_id, shard_timeout, str(directory)
    )
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise AnnotateError(
            f"cannot create the output directory {directory}: {error.strerror or error} (choose a writable place)"
        ) from None
    with lock(directory):
        return run_job(job, new_manifest(model_info, plan, settings), force, engine, n_process, address, progress)


@contextlib.contextmanager
def lock(directory: Path):
    """One job per output directory at a time (the OS drops the lock of a killed job). The lock
    file is created first: filelock takes a file it cannot create (e.g. under /proc) for one
    another job holds."""
    from filelock import FileLock, Timeout

    path = directory / LOCK
    try:
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o644))
    except OSError as error:
        raise AnnotateError(
            f"cannot create the lock file {path}: {error.strerror or error} (choose a writable output directory)"
        ) from None
    try:
        with FileLock(str(path), timeout=0):
            yield
    except Timeout:
        raise AnnotateError(f"another job is writing {directory} (it holds {directory / LOCK})") from None


def run_job(
    job: Job, manifest: Dict, force: bool, engine: str, n_process: int, address: Optional[str], progress: Optional[bool]
) -> Dict:
    """Resume, refuse or start over what the output directory holds, annotate what is left, finish."""
    directory = Path(job.output_dir)
    old = load_manifest(directory)
    if force:
        start_over(directory)
        old = None
    elif old is not None:
        changed = differences(old, manifest)
        if changed:
            raise AnnotateError(
                f"{directory} holds the output of another job ({'; '.join(changed)}): "
                f"use --force to start it over, or another output directory"
            )
    elif any(True for _ in output_files(directory)):
        raise AnnotateError(f"{directory} has shard files but no {MANIFEST}: use --force to start over")
    for temporary in directory.glob(f"{TEMP_PREFIX}*"):  # left by a killed run
        remove(temporary)

    done = finished_shards(directory, old, manifest)
    journal = read_journal(directory)
    for index, stats in done.items():  # a completed manifest's shards join the journal before it is rewritten
        if index not in journal:
            append_journal(directory, {"shard": index, **stats})
    resumed = len(done)
    todo = [shard for shard in manifest["shards"] if shard["index"] not in done]
    this_run: Dict[int, Dict] = {}
    if todo:
        write_manifest(directory, manifest)
        run(job, manifest, todo, done, this_run, engine, n_process, address, progress)
    return finish(directory, manifest, done, this_run, resumed)


def run(
    job: Job,
    manifest: Dict,
    todo,
    done: Dict[int, Dict],
    this_run: Dict[int, Dict],
    engine: str,
    n_process: int,
    address: Optional[str],
    progress: Optional[bool],
) -> None:
    """Annotate the shards of `todo` with an engine, recording each finished one in `done` and
    `this_run` and in the journal."""
    planned = {s["index"]: s["documents"] for s in manifest["shards"]}
    bar = Progress(manifest["documents"], sum(planned[i] for i in done), progress)

    def on_done(index: int, stats: Dict) -> None:
        append_journal(job.output_dir, {"shard": index, **stats})
        done[index] = stats
        this_run[index] = stats

    try:
        if engine == "ray":
            from .ray_engine import run_ray

            run_ray(job, todo, on_done, bar.update, n_process, address)
        else:
            from .local import run_local

            run_local(job, todo, on_done, bar.update, n_process)
    except KeyboardInterrupt:
        raise Interrupted(
            f"interrupted: {len(done)} of {len(manifest['shards'])} shards are done and kept; "
            f"the same command continues from there"
        ) from None
    finally:
        bar.close()


def finish(directory: Path, manifest: Dict, done: Dict[int, Dict], this_run: Dict[int, Dict], resumed: int) -> Dict:
    """Complete the manifest (per-shard stats, counts by reason), drop the journal, summarize."""
    for shard in manifest["shards"]:
        shard["file"] = shard_file_name(shard["index"], manifest["settings"]["format"])
        shard["stats"] = done[shard["index"]]
    stats = [s["stats"] for s in manifest["shards"]]
    annotation = sum_counts(*(s["issues"] for s in stats))
    issues = manifest["input_issues"]
    counts = {
        "documents": sum(s["documents"] for s in stats),
        "words": sum(s["words"] for s in stats),
        "sentences": sum(s["sentences"] for s in stats),
        "skipped": sum_counts(
            {k: n for k, n in issues.items() if k in SKIPPED},
            {k: n for k, n in annotation.items() if k in ANNOTATION_SKIPPED},
        ),
        "repaired": {k: n for k, n in issues.items() if k in REPAIRED},
        "kept": {k: n for k, n in annotation.items() if k in ANNOTATION_KEPT},
    }
    manifest.update(
        status="complete",
        counts=counts,
        annotation_errors=[e for s in stats for e in s["errors"]][:100],
        reasons={**SKIPPED, **REPAIRED, **ANNOTATION_SKIPPED, **ANNOTATION_KEPT},
    )
    write_manifest(directory, manifest)
    remove_journal(directory)
    run_stats = list(this_run.values())
    seconds = (max(s["end"] for s in run_stats) - min(s["start"] for s in run_stats)) if run_stats else 0.0
    summary = {
        **counts,
        "shards": len(stats),
        "format": manifest["settings"]["format"],
        "output_dir": str(directory),
        "resumed_shards": resumed,
        "run_documents": sum(s["documents"] for s in run_stats),
        "run_words": sum(s["words"] for s in run_stats),
        "run_seconds": round(seconds, 3),
    }
    summary["line"] = summary_line(summary)
    return summary
