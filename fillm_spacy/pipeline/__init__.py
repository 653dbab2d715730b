"""spaCy pipeline components of fillm_spacy (registered as spaCy factories via entry points)."""
