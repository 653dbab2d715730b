"""Reading gold data: the spaCy corpus reader `fillm.JointCorpus.v1` (registry `readers`), and
gold records on disk with the held-out START:END ranges taken from them (`records`)."""
