"""Typed texts at the HTTP boundary: the rule of `gateway.domain.text` as pydantic field metadata.

    name: Annotated[str, typed("申请人姓名")] = Field(min_length=1, max_length=64)
    address: Annotated[str | None, typed("住址", blank=None)] = Field(default=None, max_length=200)
    reason: Annotated[str, typed("理由", multiline=True, blank="")] = Field(default="", max_length=500)

The text is normalised before the field's own constraints (length, pattern) apply, so they judge what is
kept. A refusal is a validation error of type `text_refused` whose `msg` is the rule's Chinese message;
FastAPI's handler answers it as a 422 `invalid-request` problem whose `errors[].loc` names the field.
`blank` is what a blank text becomes in an optional field (not given); without it a blank is refused.
"""

from __future__ import annotations

from typing import Any, Final

from pydantic import AfterValidator, BeforeValidator
from pydantic_core import PydanticCustomError

from gateway.domain.text import UndeliverableText, normalised, typed_text, typed_values

REFUSED: Final = object()  # `blank=REFUSED`: a required text; blank is refused


def refusal(message: str) -> PydanticCustomError:
    return PydanticCustomError("text_refused", "{message}", {"message": message})


def typed(field: str, *, multiline: bool = False, blank: Any = REFUSED) -> BeforeValidator:
    """Field metadata that keeps a typed text as the rule says; `field` names it as a person reads it."""

    def keep(value: Any) -> Any:
        if not isinstance(value, str):
            return value  # not a text at all: the field's own type says so
        if blank is not REFUSED and not normalised(value, multiline):
            return blank
        try:
            return typed_text(value, field, multiline=multiline)
        except UndeliverableText as refused:
            raise refusal(str(refused)) from None

    return BeforeValidator(keep)


def typed_json(what: str) -> AfterValidator:
    """Field metadata for a JSON object a person filled in (a query's parameters): every string in it kept
    as the rule says; a refusal names each place."""

    def keep(value: Any) -> Any:
        kept, refusals = typed_values(value, what)
        if refusals:
            raise refusal("；".join(r.message for r in refusals))
        return kept

    return AfterValidator(keep)
