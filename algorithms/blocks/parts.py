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


class Named:
    """Modules and optimizers checkpointed under fixed keys: a part made of a method's own pieces."""

    def __init__(self, **pieces):
        self.pieces = pieces

    def state_dict(self) -> dict:
        return {key: piece.state_dict() for key, piece in self.pieces.items()}

    def load_state_dict(self, state: dict) -> None:
        for key, piece in self.pieces.items():
            piece.load_state_dict(state[key])
