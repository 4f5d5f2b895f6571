"""Turn a pydantic ValidationError into one CoopbenchError that names the key."""

from __future__ import annotations

from pydantic import BaseModel, ValidationError

from coopbench.errors import CoopbenchError


def params_error(err: ValidationError, prefix: str, model: type[BaseModel], what: str) -> CoopbenchError:
    first = err.errors()[0]
    key = ".".join(str(part) for part in first["loc"])
    full_key = f"{prefix}.{key}" if key else prefix
    if first["type"] == "extra_forbidden":
        return CoopbenchError(f"unknown key {full_key} for {what}",
                              f"valid keys: {', '.join(sorted(model.model_fields)) or 'none'}")
    value = first.get("input")
    return CoopbenchError(f"bad value {full_key}={value!r} for {what}: {first['msg']}",
                          f"give {full_key} a valid value")
