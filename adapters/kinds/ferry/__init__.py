"""The ferry adapter kind: sectors behind an isolation gateway (网闸) or a one-way link, reached by files.

`batch.py` is the batch format (adapters/FERRY-FORMAT.md): seal and open one signed, enveloped file;
`folders.py` the link folders: atomic writes with a done marker, the ready list, quarantine, naming and the
text/XML wrappers an isolation gateway's content inspection accepts. Imports adapters' own modules,
`certstore` and `mappings`; never another kind.
"""
