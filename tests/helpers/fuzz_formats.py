"""Fuzz case generators for tables, exam lists, checkpoints and configs (see tests/helpers/fuzz.py)."""


def readers():
    return []
