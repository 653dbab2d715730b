"""fillm_spacy: a LoRA-tuned decoder LLM as a spaCy encoder, with heads and a calamanCy comparison."""

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Optional

try:
    __version__ = version("fillm_spacy")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0.0.0"


class IncompatiblePipeline(RuntimeError):
    """The pipeline was built for another spaCy version."""


def check_spacy_version(path: Path) -> None:
    """One clear line instead of spaCy's warning followed by an obscure failure later."""
    import spacy
    from spacy.util import get_model_meta, is_compatible_version

    meta_file = Path(path) / "meta.json"
    if not meta_file.exists():
        return
    wanted = get_model_meta(path).get("spacy_version")
    if wanted and is_compatible_version(spacy.__version__, wanted) is False:
        raise IncompatiblePipeline(
            f"The pipeline at {path} needs spaCy {wanted} but spaCy {spacy.__version__} is installed: "
            f"pip install 'spacy{wanted}' or retrain the pipeline with this spaCy."
        )


def load(name: str = "tl_fillm_sm", precision: Optional[str] = None, compiled: Optional[bool] = None, **kwargs):
    """Load a fillm pipeline, as `calamancy.load(name)` loads a calamanCy one: the name of an
    installed pipeline package (`tl_fillm_sm` or `tl_fillm_lg`, built by `spacy project run
    package`) or a path.
    precision: what the LLM layers compute in ("float32", "bfloat16", "auto"; None: the
        pipeline's own setting); ignored for a pipeline without an LLM encoder.
    compiled: run the LLM layers torch.compile'd at inference (None: the pipeline's own setting).
    Other keyword arguments go to `spacy.load` (e.g. exclude=["ner"])."""
    import spacy  # imported here so that `import fillm_spacy` stays cheap
    from spacy.util import get_package_path, is_package, load_config

    directory = None
    if is_package(name):
        package_path = get_package_path(name)
        candidates = [p for p in package_path.iterdir() if (p / "config.cfg").exists()]
        directory = candidates[0] if candidates else None
    elif Path(name).exists():
        directory = Path(name)
    if directory is not None:
        check_spacy_version(directory)
    settings = {key: value for key, value in (("precision", precision), ("compiled", compiled)) if value is not None}
    if settings and directory is not None:
        encoder = (
            load_config(directory / "config.cfg", interpolate=False)["components"].get("tok2vec", {}).get("model", {})
        )
        # v2 keeps them in its `compute` block, v1 flat.
        block = {
            "fillm.LLMEncoder.v2": "components.tok2vec.model.compute.",
            "fillm.LLMEncoder.v1": "components.tok2vec.model.",
        }
        prefix = block.get(encoder.get("@architectures"))
        if prefix is not None:
            kwargs["config"] = {**kwargs.get("config", {}), **{prefix + k: v for k, v in settings.items()}}
    try:
        return spacy.load(name, **kwargs)
    except ValueError as error:
        if "mismatched structure" not in str(error):
            raise
        raise IncompatiblePipeline(
            f"The pipeline {name} holds weights for another model structure than its config builds with this "
            "fillm_spacy (pipelines saved before the packed BiLSTM are such): re-train it with this version."
        ) from None
