"""Yiwang (一网): the gateway itself, one package per layer of the way a case travels, top to bottom.

bootstrap → http · cli → transport → sectors → cases → catalogue · materials · notifications · audit ·
security → persistence → config · observability → domain. A layer imports only the layers below it; the
`layers` contract in pyproject.toml enforces it, and a module placed in no layer fails `make test`.
"""
