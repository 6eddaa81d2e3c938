"""The benchmark's message stays the canonical model's and stays renderable: `make bench` is not run by
`make test`, so without this a change to the canonical model could break the benchmark unseen."""

from __future__ import annotations

from lxml import etree

from adapters import canonical
from bench import mapping


def test_the_benchmark_message_keeps_to_the_canonical_model_and_renders_to_an_envelope() -> None:
    mapping._check_shape(mapping.MESSAGE, canonical.MESSAGES[mapping.OPERATION])
    soap, operation = mapping._adapter()
    request = soap.render(mapping.OPERATION, mapping.MESSAGE)
    envelope = etree.tostring(soap.client.create_message(soap.service, operation, **request), encoding="unicode")
    assert all(m["name"] in envelope for m in mapping.MESSAGE["case"]["materials"])
