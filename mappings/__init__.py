"""The mapping engine: declarative YAML mappings between canonical messages and sector messages.

Public API (what `__all__` names, importable from `mappings` itself): `compile_mapping` -> `CompiledMapping`
(render_request / read_response, and for REST mappings render_http -> `HttpRequest` with `HttpSpec`/`Paging`),
the `CONVERTERS` registry (declared in `mappings.converters`; `code_table: std.NAME` names a table of
`mappings.standard_tables`), the hardened XML and JSON readers (`parse_xml`, `SAFE_PARSER`, `parse_json`), the
errors, and `strict_json`, the module reading JSON as the gateway takes it from outside (`strict_json.loads`
and its refusals). The other modules (`mappings.validate`, `mappings.xslt`...) serve the adapters' bundle
checks and this package's tests. This package imports nothing else of ours (DESIGN.md layering).
"""

from mappings import strict_json
from mappings.converters import CONVERTERS
from mappings.engine import (
    CompiledMapping,
    HttpRequest,
    HttpSpec,
    JsonAnswerError,
    Paging,
    compile_mapping,
    parse_json,
)
from mappings.errors import BusinessError, HostileXmlError, MappingError
from mappings.xml import SAFE_PARSER, parse_xml

__all__ = [
    "CONVERTERS",
    "SAFE_PARSER",
    "BusinessError",
    "CompiledMapping",
    "HostileXmlError",
    "HttpRequest",
    "HttpSpec",
    "JsonAnswerError",
    "MappingError",
    "Paging",
    "compile_mapping",
    "parse_json",
    "parse_xml",
    "strict_json",
]
