"""The `yiwang` command groups, one module per group (`yiwang adapters`, `catalogue`, `keys`, `certs`,
`audit`, `simulators`); the root that mounts them is `gateway.bootstrap.cli`.

A group is handed what it opens (a store, a ledger) by the root, so it builds nothing from settings. May import
the layers below the driving side (sectors … domain); groups never import each other: what they share lives
in `gateway.cli.common` (exit codes) and `gateway.cli.output` (how listings, shows and progress are printed).
"""
