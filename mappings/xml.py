"""The one hardened lxml parser every XML we read goes through (DESIGN.md, "known traps").

Entities are never resolved, no DTD is loaded, nothing is fetched from the network and huge
trees are refused. On top of that `parse_xml` rejects any document with a DOCTYPE: no sector or
hall message needs one, and a DOCTYPE is how entity bombs and external references arrive.
"""

from __future__ import annotations

from lxml import etree

from mappings.errors import HostileXmlError

SAFE_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


def parse_xml(data: bytes) -> etree._Element:
    """Parse untrusted XML bytes; raise `HostileXmlError` on a DOCTYPE, `etree.XMLSyntaxError` if malformed."""
    try:
        # Entities are not resolved by SAFE_PARSER, so parsing a small bomb is cheap; we then refuse it.
        root = etree.fromstring(data, parser=SAFE_PARSER)
    except etree.XMLSyntaxError as exc:
        # libxml2 stops a big bomb itself ("entity amplification"); report it as what it is.
        if b"<!DOCTYPE" in data:
            raise HostileXmlError(f"XML with a DOCTYPE is refused ({exc})") from exc
        raise
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None:
        raise HostileXmlError(f"XML with a DOCTYPE is refused ({docinfo.doctype or 'internal subset'})")
    return root
