"""Opt-in drills that take too long for `make test` (run one with `python -m drills.<name>`)."""
