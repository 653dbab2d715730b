"""Reading data: the spaCy corpus reader `fillm.JointCorpus.v1` (registry `readers`), gold
records on disk with the held-out START:END ranges taken from them (`records`), and raw text one
document per line (`raw_text`)."""
