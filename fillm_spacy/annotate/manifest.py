"""The manifest of an output directory and its journal of finished shards.

`manifest.json` (written atomically when a job starts and when it ends) holds the inputs (path,
size, sha256, records), the model (name, version, a fingerprint of its files), the settings that
decide the output (format, shard size, text key, batch size, part size), the shard table (each
shard's input ranges and documents) and the counts (bad records by reason; at the end documents,
words, sentences). `progress.jsonl` gets one fsynced line per shard as it is finished, with the
shard file's size and sha256; a resumed job trusts a line only when its shard file is still that
file (a truncated or altered shard is redone). An existing manifest that disagrees with the
new job (another input, model or setting) is refused unless the job is forced.
"""

import hashlib
import json
import os
from pathlib import Path
from typing import Dict, List, Optional

from .errors import AnnotateError
from .writers import write_atomic, write_error

MANIFEST = "manifest.json"
JOURNAL = "progress.jsonl"
MANIFEST_VERSION = 1
SETTINGS = ("format", "shard_size", "text_key", "batch_size", "part_tokens", "part_chars")


def pipeline_directory(model: str) -> Path:
    """The directory that holds the pipeline's config.cfg: `model` itself, or inside the
    installed package `model` (as spacy.load resolves them)."""
    from spacy.util import get_package_path, is_package

    path = Path(model)
    if path.is_dir() and (path / "config.cfg").exists():
        return path.resolve()
    if is_package(model):
        package = get_package_path(model)
        found = [p for p in sorted(package.iterdir()) if (p / "config.cfg").exists()]
        if found:
            return found[0]
    raise AnnotateError(f"{model}: not a pipeline directory (no config.cfg) nor an installed pipeline package")


def describe_model(model: str) -> Dict:
    """Name, version, language, components and a sha256 over every file of the pipeline (the
    base LLM is referenced from the pipeline's files by name and fingerprint, so a changed
    base model changes it too) — without loading the pipeline."""
    directory = pipeline_directory(model)
    meta = (
        json.loads((directory / "meta.json").read_text(encoding="utf8")) if (directory / "meta.json").exists() else {}
    )
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(directory)).encode("utf8") + b"\0")
        with open(path, "rb") as stream:
            for block in iter(lambda: stream.read(2**20), b""):
                digest.update(block)
    name = f"{meta['lang']}_{meta['name']}" if meta.get("lang") and meta.get("name") else str(model)
    return {
        "model": model,
        "name": name,
        "version": meta.get("version"),
        "lang": meta.get("lang"),
        "pipeline": meta.get("pipeline", []),
        "path": str(directory),
        "fingerprint": digest.hexdigest(),
    }


def new_manifest(model: Dict, plan: Dict, settings: Dict) -> Dict:
    from .. import __version__

    return {
        "manifest_version": MANIFEST_VERSION,
        "tool": f"fillm_spacy.annotate {__version__}",
        "status": "running",
        "model": model,
        "settings": {key: settings[key] for key in SETTINGS},
        "inputs": plan["inputs"],
        "documents": plan["documents"],
        "input_issues": plan["issues"],
        "input_issue_examples": plan["issue_examples"],
        "shards": plan["shards"],
    }


def load_manifest(directory: Path) -> Optional[Dict]:
    path = Path(directory) / MANIFEST
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf8"))
    except ValueError:
        raise AnnotateError(f"{path} is not valid JSON: use --force to start this output over") from None


def differences(old: Dict, new: Dict) -> List[str]:
    """What makes `old`'s output not a part of `new`'s: changed inputs, model or settings."""
    found = []
    old_inputs = {i["path"]: i for i in old.get("inputs", [])}
    new_inputs = {i["path"]: i for i in new["inputs"]}
    for path in sorted(set(old_inputs) | set(new_inputs)):
        before, after = old_inputs.get(path), new_inputs.get(path)
        if before is None or after is None:
            found.append(f"input {path} {'added' if before is None else 'removed'}")
        elif (before["bytes"], before["sha256"]) != (after["bytes"], after["sha256"]):
            found.append(f"input {path} changed")
    if old.get("model", {}).get("fingerprint") != new["model"]["fingerprint"]:
        found.append(
            f"model changed ({old.get('model', {}).get('name')} {old.get('model', {}).get('version')} → "
            f"{new['model']['name']} {new['model']['version']}, other files)"
        )
    for key in SETTINGS:
        if old.get("settings", {}).get(key) != new["settings"][key]:
            found.append(f"--{key.replace('_', '-')} {old.get('settings', {}).get(key)} → {new['settings'][key]}")
    return found


def write_manifest(directory: Path, manifest: Dict) -> None:
    write_atomic(Path(directory) / MANIFEST, (json.dumps(manifest, ensure_ascii=False, indent=1) + "\n").encode("utf8"))


def append_journal(directory: Path, entry: Dict) -> None:
    """One fsynced line; a line cut short by a failed write is ignored when read (its shard is redone)."""
    path = Path(directory) / JOURNAL
    try:
        with open(path, "a", encoding="utf8") as stream:
            stream.write(json.dumps(entry, ensure_ascii=False) + "\n")
            stream.flush()
            os.fsync(stream.fileno())
    except OSError as error:
        raise write_error(path, error) from None


def read_journal(directory: Path) -> Dict[int, Dict]:
    """Finished shards by index; a line cut short by a crash is ignored (its shard is redone)."""
    path = Path(directory) / JOURNAL
    done: Dict[int, Dict] = {}
    if path.exists():
        for line in path.read_text(encoding="utf8", errors="replace").splitlines():
            try:
                entry = json.loads(line)
                done[int(entry.pop("shard"))] = entry
            except (ValueError, KeyError, TypeError):
                continue
    return done


def remove_journal(directory: Path) -> None:
    path = Path(directory) / JOURNAL
    if path.exists():
        path.unlink()
