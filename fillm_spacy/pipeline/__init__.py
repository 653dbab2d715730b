"""spaCy pipeline components of fillm_spacy (registered as spaCy factories via entry points) and
tools on a loaded pipeline (`quantize`: int8 for CPU inference)."""
