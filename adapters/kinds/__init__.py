"""Adapter kinds: one package per kind (`soap/`, `rest/`), each everything about how a sector of that kind is
reached."""
