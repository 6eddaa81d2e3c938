"""The adapter kinds, one package each (`adapters/kinds/<kind>/`), and `KINDS`: the registry of them.

Each kind is everything about one way of reaching a sector (its descriptor options and rules, auth forms,
service-description check, preview and adapter) behind `adapters.kind.AdapterKind`; the recipe for adding
one is that module's docstring: a folder, and its line below. Kinds never import one another; what they
share is in `adapters.kinds.common`.
"""

from __future__ import annotations

from adapters.kind import AdapterKind
from adapters.kinds.ferry import FERRY
from adapters.kinds.rest import REST
from adapters.kinds.soap import SOAP

# The descriptor's `kind` -> the kind. Data, not code: the bundle schema's `kind` enum, the auth forms each
# kind takes and every kind-specific rule come from here. Tests register a toy kind here for one test.
KINDS: dict[str, AdapterKind] = {"soap": SOAP, "rest": REST, "ferry": FERRY}
