"""A method's checkpoint is the union of its parts' state dicts (each part names its own keys)."""

from __future__ import annotations


def state_of(*parts) -> dict:
    state: dict = {}
    for part in parts:
        state.update(part.state_dict())
    return state


def load_parts(state: dict, *parts) -> None:
    for part in parts:
        part.load_state_dict(state)
