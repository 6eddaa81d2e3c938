"""The tamper-evident audit and message logs (hash chains, signed checkpoints) and retention (purge or
archive what has outlived its days). May import persistence, config, observability and domain.
"""
