"""Application materials: uploads stored content-addressed, and how they travel to a sector (inline or
by a signed link). May import persistence, config, observability and domain.
"""
