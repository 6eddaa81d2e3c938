"""The mapping engine: declarative YAML mappings between canonical messages and sector messages.

Public API: `compile_mapping` -> `CompiledMapping` (render_request / read_response, and for REST
mappings render_http -> `HttpRequest` with `HttpSpec`/`Paging`), the `CONVERTERS` registry, the
hardened XML and JSON readers (`parse_xml`, `SAFE_PARSER`, `parse_json`) and the errors.
This package imports nothing else of ours (DESIGN.md layering).
"""

from mappings.engine import (
    CONVERTERS,
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
]
