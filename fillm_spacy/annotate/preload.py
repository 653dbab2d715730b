"""Imported once by the local engine's fork server (see local.worker_context): spaCy's registries
are filled from the installed entry points here, so that a forked worker loads its pipeline
without scanning every installed distribution again (seconds per worker otherwise)."""

import catalogue
import spacy

for _name in dir(spacy.util.registry):
    _registry = getattr(spacy.util.registry, _name, None)
    if isinstance(_registry, catalogue.Registry):
        _registry.get_all()
