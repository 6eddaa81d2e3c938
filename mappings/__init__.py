"""The mapping engine: declarative YAML mappings between canonical messages and sector messages.

Public API: `compile_mapping` -> `CompiledMapping` (render_request / read_response), the
`CONVERTERS` registry, the hardened XML parser (`parse_xml`, `SAFE_PARSER`) and the errors.
This package imports nothing else of ours (DESIGN.md layering).
"""

from mappings.engine import CONVERTERS, CompiledMapping, compile_mapping
from mappings.errors import BusinessError, HostileXmlError, MappingError
from mappings.xml import SAFE_PARSER, parse_xml

__all__ = [
    "CONVERTERS",
    "SAFE_PARSER",
    "BusinessError",
    "CompiledMapping",
    "HostileXmlError",
    "MappingError",
    "compile_mapping",
    "parse_xml",
]
