"""A model-less app that only carries the `seed_corpus` management command."""
