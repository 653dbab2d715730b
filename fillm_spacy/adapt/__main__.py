from .cli import app

app(prog_name="python -m fillm_spacy.adapt")
