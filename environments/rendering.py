"""Pictures of environment copies for `coopbench render` (`BatchedEnv.render_rgb`), in numpy alone.

Two small renderers, written once and used by every native task that renders:

- `grid_frame`: a grid world, cells coloured by content (layers of bool masks, later layers on top),
  then markers (agents as discs in their own colour, landmarks, boxes as squares or rings), grid lines.
- `points_frame`: a continuous 2-D world, every entity a disc of its own radius and colour.

Agent i always gets `agent_colour(i)`, so the same agent keeps its colour across tasks and frames.
Frames are `[H, W, 3]` uint8 arrays of a size fixed by the task's parameters (every frame of a task
has the same size, as an animation needs).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

Colour = tuple[int, int, int]

# tab10 without its red (apples, prey) and grey (walls, landmarks), then a few more: distinct on the light
# backgrounds used here.
_PALETTE: tuple[Colour, ...] = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (148, 103, 189), (140, 86, 75), (227, 119, 194),
    (188, 189, 34), (23, 190, 207), (0, 0, 128), (0, 128, 128), (139, 0, 139), (40, 40, 40),
)
BACKGROUND: Colour = (245, 245, 245)
GRID_LINE: Colour = (200, 200, 200)
WALL: Colour = (90, 90, 90)
APPLE: Colour = (220, 30, 30)
ORCHARD: Colour = (205, 235, 195)
WATER: Colour = (110, 160, 230)
STREAM: Colour = (170, 200, 240)
WASTE: Colour = (120, 90, 40)
BEAM: Colour = (250, 230, 90)
LEMON: Colour = (240, 210, 40)


def agent_colour(i: int) -> Colour:
    """Agent i's colour (cycles after 12 agents, darker on each cycle)."""
    base = _PALETTE[i % len(_PALETTE)]
    shade = 0.7 ** (i // len(_PALETTE))
    return tuple(int(c * shade) for c in base)


def lighter(colour: Colour, amount: float = 0.55) -> Colour:
    return tuple(int(c + (255 - c) * amount) for c in colour)


def _shape_mask(size: int, shape: str, scale: float) -> np.ndarray:
    """Bool `[size, size]` mask of a marker centred in a cell."""
    centre = (size - 1) / 2
    rows, cols = np.mgrid[0:size, 0:size]
    half = scale * size / 2
    if shape == "disc":
        return (rows - centre) ** 2 + (cols - centre) ** 2 <= half**2
    square = (np.abs(rows - centre) <= half) & (np.abs(cols - centre) <= half)
    if shape == "square":
        return square
    if shape == "ring":  # a square outline, 2 px or a tenth of the cell thick
        inner = half - max(2, size // 10)
        return square & ~((np.abs(rows - centre) <= inner) & (np.abs(cols - centre) <= inner))
    raise ValueError(f"unknown marker shape {shape!r}")


def grid_frame(shape: tuple[int, int], layers: Iterable[tuple[np.ndarray, Colour]] = (),
               markers: Iterable[tuple[int, int, Colour, str, float]] = (), cell: int = 24,
               background: Colour = BACKGROUND) -> np.ndarray:
    """A grid world `shape = (rows, cols)` as `[rows * cell, cols * cell, 3]` uint8.

    `layers`: `(mask [rows, cols] bool, colour)`, painted in order (later ones on top). `markers`:
    `(row, col, colour, shape, scale)` with shape "disc", "square" or "ring" and scale the marker's
    width as a fraction of the cell, drawn in order over the layers. Grid lines separate the cells.
    """
    height, width = shape
    cells = np.empty((height, width, 3), np.uint8)
    cells[:] = background
    for mask, colour in layers:
        cells[np.asarray(mask, dtype=bool)] = colour
    image = cells.repeat(cell, axis=0).repeat(cell, axis=1)
    masks: dict[tuple[str, float], np.ndarray] = {}
    for row, col, colour, kind, scale in markers:
        mask = masks.setdefault((kind, scale), _shape_mask(cell, kind, scale))
        image[row * cell:(row + 1) * cell, col * cell:(col + 1) * cell][mask] = colour
    image[::cell, :] = GRID_LINE
    image[:, ::cell] = GRID_LINE
    image[-1, :] = GRID_LINE
    image[:, -1] = GRID_LINE
    return image


def points_frame(points: Sequence[tuple[float, float, float, Colour]], bounds: tuple[float, float, float, float],
                 size: tuple[int, int] = (400, 400), background: Colour = BACKGROUND,
                 min_px: float = 3.0) -> np.ndarray:
    """A continuous world as `[size[0], size[1], 3]` uint8: every `(x, y, radius, colour)` a disc (world
    units; y grows upwards), drawn in order. `bounds = (x_min, x_max, y_min, y_max)` is the visible
    rectangle; discs outside it are clipped; no disc is drawn smaller than `min_px` pixels of radius."""
    height, width = size
    x_min, x_max, y_min, y_max = bounds
    image = np.empty((height, width, 3), np.uint8)
    image[:] = background
    scale_x, scale_y = (width - 1) / (x_max - x_min), (height - 1) / (y_max - y_min)
    for x, y, radius, colour in points:
        col, row = (x - x_min) * scale_x, (y_max - y) * scale_y
        r_px = max(radius * min(scale_x, scale_y), min_px)
        r0, r1 = max(int(row - r_px), 0), min(int(row + r_px) + 2, height)
        c0, c1 = max(int(col - r_px), 0), min(int(col + r_px) + 2, width)
        if r0 >= r1 or c0 >= c1:
            continue
        rows, cols = np.mgrid[r0:r1, c0:c1]
        inside = (rows - row) ** 2 + (cols - col) ** 2 <= r_px**2
        image[r0:r1, c0:c1][inside] = colour
    return image


def check_index(env, index: int) -> int:
    """`index` as an int in `[0, n_envs)`, or a ValueError naming the range."""
    if not 0 <= int(index) < env.n_envs:
        raise ValueError(f"copy index {index} out of range: {env.spec.name} has {env.n_envs} copies")
    return int(index)
