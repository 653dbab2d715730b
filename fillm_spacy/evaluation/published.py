"""calamanCy's published scores (published.json, package data), matched to our test sets by name:
shown in their own column of the compare report, never mixed with what was measured here."""

import functools
import json
from importlib import resources
from typing import Dict, Optional


@functools.cache
def published_scores() -> Dict:
    """published.json: the model, its label in the report, the source, and per test set name
    ("ud-<name>" / "ner-<name>") the dataset and its scores."""
    return json.loads(resources.files(__package__).joinpath("published.json").read_text(encoding="utf8"))


def published_for(test_name: str) -> Optional[Dict]:
    """The published entry for a test set named ud-<name> / ner-<name>: an exact key, or a key
    followed by "-" (ud-newscrawl-heldout -> ud-newscrawl, flagged as another split)."""
    test_sets = published_scores()["test_sets"]
    if test_name in test_sets:
        return {**test_sets[test_name], "same_split": True}
    for key in sorted(test_sets, key=len, reverse=True):
        if test_name.startswith(key + "-"):
            return {**test_sets[key], "same_split": False}
    return None
