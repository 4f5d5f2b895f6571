"""Turn a pydantic ValidationError into one CoopbenchError that names the key (and, for a misspelled key,
the key it was probably meant to be)."""

from __future__ import annotations

import difflib
import typing

from pydantic import BaseModel, ValidationError

from coopbench.base.errors import CoopbenchError


def did_you_mean(word: str, choices: typing.Iterable[str]) -> str:
    """"did you mean 'seeds'? " for the closest of `choices`, or "" when none is close."""
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}? " if close else ""


def _models_in(annotation) -> list[type[BaseModel]]:
    """The pydantic models an annotation may hold (list[X], X | None, str | X, dict[str, X]...)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    out = []
    for arg in typing.get_args(annotation):
        out += _models_in(arg)
    return out


def model_at(model: type[BaseModel], loc: tuple) -> tuple[type[BaseModel] | None, tuple]:
    """The model holding the key at `loc` (its last part), following fields, list indices and union members;
    and `loc` without pydantic's union tags ("AlgoSelection", "str"), as the user wrote the key."""
    current: type[BaseModel] | None = model
    clean = []
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(part, int):
            clean.append(part)
            continue
        if current is not None and str(part) in current.model_fields:
            clean.append(part)
            if not last:
                models = _models_in(current.model_fields[str(part)].annotation)
                current = models[0] if models else None
            continue
        if not last and (current is None or part == current.__name__ or part in _TAGS):
            continue  # a union member's tag: the value was tried as that type
        clean.append(part)
    return current, tuple(clean)


_TAGS = {"str", "int", "float", "bool", "list", "dict", "none", "list[str]", "dict[str,any]"}


def _ordered(errors: list[dict]) -> list[dict]:
    """An unknown key first: a misspelled key also makes its correct spelling look missing."""
    return sorted(errors, key=lambda e: e["type"] != "extra_forbidden")


def params_error(err: ValidationError, prefix: str, model: type[BaseModel], what: str) -> CoopbenchError:
    first = _ordered(err.errors())[0]
    holder, loc = model_at(model, tuple(first["loc"]))
    # A key with a newline or other control characters is shown escaped: the error stays one line.
    key = ".".join(str(part) if str(part).isprintable() else repr(str(part)) for part in loc)
    full_key = f"{prefix}.{key}" if key else prefix
    if first["type"] == "extra_forbidden":
        valid = sorted((holder or model).model_fields)
        return CoopbenchError(f"unknown key {full_key} for {what}",
                              f"{did_you_mean(loc[-1], valid)}valid keys: {', '.join(valid) or 'none'}")
    if first["type"] == "missing":
        return CoopbenchError(f"missing key {full_key} for {what}", f"add {key!r} to the file")
    value = first.get("input")
    message = " ".join(str(first["msg"]).split())
    if message.startswith("Value error, "):
        message = message[len("Value error, "):]
    if not loc:  # a model-level rule (a validator on the whole file)
        return CoopbenchError(f"{prefix} for {what}: {message}", "see the file's documented keys")
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return CoopbenchError(f"bad value {full_key}={shown} for {what}: {message}", f"give {full_key} a valid value")
