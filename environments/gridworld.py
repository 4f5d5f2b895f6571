"""Building blocks shared by the batched grid-world tasks (AS's social dilemmas and gridworlds, LAN's
Checkers, BN's Aloha, ...), written once.

Conventions, used by every helper below:

- A position is a `(row, col)` pair of int64; positions of all agents are `[B, N, 2]` (B copies,
  N agents). Row 0 is the top of the map, so "up" decreases the row.
- Static map layers (walls, spawn points, ...) are bool `[H, W]`; per-copy layers are `[B, H, W]`.
- Move actions index `MOVES`: `STAY, UP, DOWN, LEFT, RIGHT = 0..4`. A task that wants another
  action order maps its actions to these with a lookup tensor.
- Orientations index `FACING`: `NORTH, EAST, SOUTH, WEST = 0..3` (clockwise), so turning clockwise
  is `(o + 1) % 4`.
- Every random draw takes the environment's `torch.Generator` (never the global RNG), so a copy's
  future is fixed by the environment's state dict.

Public helpers: maps (`parse_ascii_map`, `flat_index`, `unflatten_index`), placement
(`sample_cells`, `random_ranks`), movement (`move_targets`, `resolve_moves`, `occupancy`,
`shared_cell_counts`, `manhattan`), observations (`self_first_index`, `padded_grid`,
`inner_view`, `egocentric_windows`, `neighbour_counts`), beams (`beam_cells`, `beam_table`,
`beam_hits`), neighbourhoods (`chain_adjacency`, `full_adjacency`). The bookkeeping every task
shares (time limit, auto-reset, episode statistics, state dicts) is `environments.base.TaskEnv`.

Nothing here loops over copies or agents: conflicts between agents (two agents entering one cell,
swaps) are resolved with `[B, N, N]` pairwise comparisons, which is cheap for the agent counts
grid tasks have (N <= ~30).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from environments.base import CopyRandom

STAY, UP, DOWN, LEFT, RIGHT = range(5)
# (d_row, d_col) of each move action.
MOVES = torch.tensor([[0, 0], [-1, 0], [1, 0], [0, -1], [0, 1]], dtype=torch.long)

NORTH, EAST, SOUTH, WEST = range(4)
# (d_row, d_col) an agent facing each orientation looks along; index (o + 1) % 4 is its right-hand side.
FACING = torch.tensor([[-1, 0], [0, 1], [1, 0], [0, -1]], dtype=torch.long)


# --- maps ---------------------------------------------------------------------------------------

def parse_ascii_map(rows: Sequence[str]) -> dict[str, torch.Tensor]:
    """`{character: bool [H, W]}` for every character of an ASCII map (all rows the same length).

    >>> layers = parse_ascii_map(["@@@", "@P@", "@@@"])
    >>> layers["P"].nonzero().tolist()
    [[1, 1]]
    """
    if not rows or any(len(r) != len(rows[0]) for r in rows):
        raise ValueError("an ASCII map needs at least one row and rows of equal length")
    codes = torch.tensor([[ord(ch) for ch in row] for row in rows], dtype=torch.int32)
    return {ch: codes == ord(ch) for ch in sorted({ch for row in rows for ch in row})}


def flat_index(pos: torch.Tensor, n_cols: int) -> torch.Tensor:
    """Row-major cell number `row * n_cols + col` of positions `[..., 2]`."""
    return pos[..., 0] * n_cols + pos[..., 1]


def unflatten_index(index: torch.Tensor, n_cols: int) -> torch.Tensor:
    """Positions `[..., 2]` of row-major cell numbers (inverse of `flat_index`)."""
    return torch.stack([torch.div(index, n_cols, rounding_mode="floor"), index % n_cols], dim=-1)


# --- random placement ---------------------------------------------------------------------------

def sample_cells(random: CopyRandom, allowed: torch.Tensor, k: int) -> torch.Tensor:
    """`k` distinct cells per copy, uniformly among the True cells of `allowed`, `[B, k, 2]`.

    `allowed` is a static `[H, W]` mask or per copy `[B, H, W]`; every copy needs at least `k`
    allowed cells. The order of the k cells is random too, so "the first k1 for agents, the next k2
    for landmarks" is a uniform joint placement.
    """
    n_cols = allowed.shape[-1]
    flat = allowed.reshape(*allowed.shape[:-2], -1)
    if int(flat.sum(-1).min()) < k:
        raise ValueError(f"fewer than {k} allowed cells to place {k} distinct items")
    scores = random.rand(flat.shape[-1])
    scores = scores.masked_fill(~flat.expand(scores.shape[0], -1), -1.0)
    return unflatten_index(scores.topk(k, dim=-1).indices, n_cols)


def random_ranks(random: CopyRandom, n_agents: int) -> torch.Tensor:
    """A uniformly random strict priority order of the agents of every copy, `[B, N]` int64 (distinct)."""
    return random.rand(n_agents).argsort(dim=-1)


# --- movement -----------------------------------------------------------------------------------

def move_targets(pos: torch.Tensor, actions: torch.Tensor, moves: torch.Tensor = MOVES,
                 walls: torch.Tensor | None = None, shape: tuple[int, int] | None = None) -> torch.Tensor:
    """The cell each agent tries to enter, `[B, N, 2]`.

    `actions` `[B, N]` index `moves` (`[A, 2]` deltas; actions that do not move have a zero row).
    A target outside the `shape` grid (or outside `walls`' grid) or on a wall (`walls` `[H, W]` or
    `[B, H, W]`) is replaced by the agent's own cell: the agent bumps and stays.
    """
    target = pos + moves.to(pos.device)[actions]
    if walls is not None:
        shape = tuple(walls.shape[-2:])
    if shape is None:
        return target
    inside = (target >= 0).all(-1) & (target[..., 0] < shape[0]) & (target[..., 1] < shape[1])
    clipped = torch.where(inside.unsqueeze(-1), target, pos)
    if walls is not None:
        if walls.dim() == 2:
            blocked = walls[clipped[..., 0], clipped[..., 1]]
        else:
            rows = torch.arange(pos.shape[0], device=pos.device).unsqueeze(1)
            blocked = walls[rows, clipped[..., 0], clipped[..., 1]]
        clipped = torch.where(blocked.unsqueeze(-1), pos, clipped)
    return clipped


def resolve_moves(pos: torch.Tensor, target: torch.Tensor, random: CopyRandom | None = None,
                  allow_swaps: bool = False) -> torch.Tensor:
    """Simultaneous moves where no two agents may share a cell; returns the new positions `[B, N, 2]`.

    Rules (agents start in distinct cells, `target` from `move_targets`):
    1. Agents whose target is their own cell stay (and keep their cell).
    2. Several movers entering one cell: one of them wins, chosen uniformly at random with
       `random`; without it all of them fail (deterministic and symmetric).
    3. Two agents swapping cells both fail unless `allow_swaps`.
    4. A mover entering a cell whose occupant does not leave it (stays, or fails to move) fails;
       failures cascade along chains, resolved as a fixed point (at most N rounds of `[B, N, N]`
       tensor ops; typically one or two). Cycles of three or more agents all move.
    """
    n_envs, n_agents, _ = pos.shape
    here, there = _cell_key(pos), _cell_key(target)  # [B, N] scalar keys: compare once, not per coordinate
    moving = there != here
    others = ~torch.eye(n_agents, dtype=torch.bool, device=pos.device)
    contest = (there.unsqueeze(2) == there.unsqueeze(1)) & others & moving.unsqueeze(1) & moving.unsqueeze(2)
    if random is None:
        lose = contest.any(-1)
    else:
        rank = random_ranks(random, n_agents)
        lose = (contest & (rank.unsqueeze(1) > rank.unsqueeze(2))).any(-1)  # a contestant ranks higher
    enters = (there.unsqueeze(2) == here.unsqueeze(1)) & others  # [B, i, j]: i's target is j's cell
    ok = moving & ~lose
    if not allow_swaps:
        ok &= ~(enters & enters.transpose(1, 2)).any(-1)
    for _ in range(n_agents):
        blocked = (enters & ~ok.unsqueeze(1)).any(-1)  # the occupant of my target does not leave
        new_ok = ok & ~blocked
        if torch.equal(new_ok, ok):
            break
        ok = new_ok
    return torch.where(ok.unsqueeze(-1), target, pos)


def _cell_key(pos: torch.Tensor) -> torch.Tensor:
    """One int64 per `(row, col)` position (valid for coordinates below 2^31)."""
    return (pos[..., 0] << 32) + pos[..., 1]


def occupancy(pos: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Agents per cell of every copy, `[B, H, W]` int64."""
    n_envs = pos.shape[0]
    counts = torch.zeros(n_envs, shape[0] * shape[1], dtype=torch.long, device=pos.device)
    counts.scatter_add_(1, flat_index(pos, shape[1]), torch.ones_like(pos[..., 0]))
    return counts.view(n_envs, *shape)


def shared_cell_counts(pos: torch.Tensor) -> torch.Tensor:
    """For every agent, how many other agents stand in its cell, `[B, N]` int64."""
    key = _cell_key(pos)
    return (key.unsqueeze(2) == key.unsqueeze(1)).sum(-1) - 1


def manhattan(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Manhattan (grid) distance between positions `[..., 2]`."""
    return (a - b).abs().sum(-1)


# --- observations -------------------------------------------------------------------------------


def self_first_index(n_agents: int, widths: Sequence[int], device=None) -> torch.Tensor:
    """Gather index `[N, D]` that turns a flat global state into every agent's self-first view.

    The state is a concatenation of blocks, block b holding `widths[b]` features for each of the N
    agents (agent-major: `[agent 0 features, agent 1 features, ...]`). `state[:, index]` is then
    `[B, N, D]` with row i listing every block's agents in the order i, i+1, ..., i-1: one gather
    instead of rotating and concatenating each block. A block of width 0 is skipped.
    """
    order = (torch.arange(n_agents, device=device).unsqueeze(1) + torch.arange(n_agents, device=device)) % n_agents
    parts, offset = [], 0
    for width in widths:
        features = torch.arange(width, device=device)
        parts.append((offset + order.unsqueeze(-1) * width + features).flatten(1))
        offset += n_agents * width
    return torch.cat(parts, dim=1)


def padded_grid(layers: torch.Tensor, radius: int, pad_values: Sequence[float]) -> torch.Tensor:
    """Channels-last padded copy of `[B, C, H, W]` (or static `[C, H, W]`) layers for
    `egocentric_windows`: `[B, H + 2r, W + 2r, C]`, with channel c filled with `pad_values[c]`
    outside the map. Environments usually build it once and rewrite only the dynamic channels
    (`inner_view`)."""
    if layers.dim() == 3:
        layers = layers.unsqueeze(0)
    n_envs, n_channels, height, width = layers.shape
    out = torch.empty(n_envs, height + 2 * radius, width + 2 * radius, n_channels,
                      dtype=layers.dtype, device=layers.device)
    out[:] = torch.tensor(list(pad_values), dtype=layers.dtype, device=layers.device)
    inner_view(out, radius)[:] = layers.permute(0, 2, 3, 1)
    return out


def inner_view(padded: torch.Tensor, radius: int) -> torch.Tensor:
    """The map part `[B, H, W, C]` of a `padded_grid` (a view: writing to it updates the grid)."""
    return padded[:, radius:padded.shape[1] - radius, radius:padded.shape[2] - radius]


_WORDS = {2: torch.int16, 4: torch.int32, 8: torch.int64}


def egocentric_windows(padded: torch.Tensor, pos: torch.Tensor, radius: int) -> torch.Tensor:
    """The `(2r+1) x (2r+1)` window centred on every agent, unrotated, channels-last
    `[B, N, 2r+1, 2r+1, C]`: `[..., i, j, c]` is channel c of the cell `i - r` rows below and `j - r`
    columns right of the agent.

    `padded` is a `padded_grid` with the same radius, so windows near the border show the pad
    values. Same dtype as `padded`: keep the grid uint8 and convert once, straight into the
    observation buffer (`obs[..., :K*K*C].view(B, N, K, K, C).copy_(windows)`), the fastest way.
    With uint8 layers and C = 2, 4 or 8 channels, each cell is gathered as one machine word (about
    twice as fast as gathering bytes), so pick a channel count of that size where it costs nothing.
    """
    size = 2 * radius + 1
    n_envs, rows_p, cols_p, n_channels = padded.shape
    rows = torch.arange(n_envs, device=pos.device).unsqueeze(1)
    word = _WORDS.get(n_channels) if padded.dtype == torch.uint8 and padded.is_contiguous() else None
    if word is not None:
        cells = padded.view(n_envs, rows_p, cols_p * n_channels).view(word)  # [B, Hp, Wp] words
        windows = cells.unfold(1, size, 1).unfold(2, size, 1)[rows, pos[..., 0], pos[..., 1]]  # [B, N, K, K]
        return windows.view(torch.uint8).view(*windows.shape, n_channels)
    windows = padded.unfold(1, size, 1).unfold(2, size, 1)  # [B, H, W, C, K, K] view, no copy
    # The gathered [B, N, C, K, K] keeps the grid's channels-last memory order (torch 2.x), so after this
    # permute the result is contiguous and converting it is one sequential pass.
    return windows[rows, pos[..., 0], pos[..., 1]].permute(0, 1, 3, 4, 2)


def neighbour_counts(mask: torch.Tensor, radius: int = 1, include_centre: bool = False) -> torch.Tensor:
    """How many True cells of `mask` `[B, H, W]` lie in the `(2r+1)^2` box around every cell
    (cells outside the map count as False), `[B, H, W]` int64. A separable box sum (rows, then
    columns) of small integers, cheaper on CPU than a convolution."""
    height, width = mask.shape[-2:]
    size = 2 * radius + 1
    dtype = torch.uint8 if size * size < 256 else torch.int32
    padded = torch.nn.functional.pad(mask.to(dtype), (radius, radius, radius, radius))
    rows = sum(padded[..., :, d:d + width] for d in range(size))  # [B, H + 2r, W]
    total = sum(rows[..., d:d + height, :] for d in range(size))
    if not include_centre:
        total = total - mask.to(dtype)
    return total.long()


def beam_cells(pos: torch.Tensor, orientation: torch.Tensor, firing: torch.Tensor, walls: torch.Tensor,
               length: int, width: int = 3) -> torch.Tensor:
    """Cells hit by beams, `[B, H, W]` bool (union over the firing agents).

    An agent with `firing` `[B, N]` True fires from its cell `pos` `[B, N, 2]` along
    `FACING[orientation]`: `width` parallel lines (its own, then pairs to its right and left), each
    covering the start cell and `length` cells ahead and stopped at (excluding) the first wall
    (`walls` static `[H, W]`; cells outside the map count as walls). This is the cleaning/fining beam
    of the Sequential Social Dilemma games (length 5, width 3). On a static map, `beam_table` +
    `beam_hits` give the same result faster.
    """
    height, width_cells = walls.shape
    device = pos.device
    ahead = FACING.to(device)[orientation]  # [B, N, 2]
    side = FACING.to(device)[(orientation + 1) % 4]
    offsets = torch.tensor([0] + [s * k for k in range(1, width // 2 + 1) for s in (1, -1)], device=device)
    steps = torch.arange(length + 1, device=device)
    # cells[b, n, line, step] = pos + offset * side + step * ahead
    cells = (pos[:, :, None, None] + offsets[:, None, None] * side[:, :, None, None]
             + steps[None, :, None] * ahead[:, :, None, None])
    inside = (cells[..., 0] >= 0) & (cells[..., 0] < height) & (cells[..., 1] >= 0) & (cells[..., 1] < width_cells)
    safe = torch.where(inside.unsqueeze(-1), cells, torch.zeros_like(cells))
    open_cell = inside & ~walls.to(device)[safe[..., 0], safe[..., 1]]
    reached = open_cell.to(torch.int8).cummin(dim=-1).values.bool()  # each line stops at its first wall
    reached &= firing.to(device)[:, :, None, None]
    flat = flat_index(safe, width_cells).flatten(1)
    hit_counts = torch.zeros(pos.shape[0], height * width_cells, dtype=torch.int32, device=device)
    hit_counts.scatter_add_(1, flat, reached.flatten(1).to(torch.int32))
    return (hit_counts > 0).view(pos.shape[0], height, width_cells)


def beam_table(walls: torch.Tensor, length: int, width: int = 3) -> torch.Tensor:
    """`beam_cells` precomputed for every start cell and orientation of a static map, `[H*W*4, H*W]`
    bool; the beam of an agent at `pos` facing `o` is row `flat_index(pos, W) * 4 + o`. A lookup per
    step (`beam_hits`) is much cheaper than tracing beams."""
    height, width_cells = walls.shape
    starts = unflatten_index(torch.arange(height * width_cells, device=walls.device), width_cells)
    pos = starts.repeat_interleave(4, dim=0).unsqueeze(1)  # [H*W*4, 1, 2]: one "copy" per (cell, o)
    orientation = torch.arange(4, device=walls.device).repeat(height * width_cells).unsqueeze(1)
    firing = torch.ones_like(orientation, dtype=torch.bool)
    return beam_cells(pos, orientation, firing, walls, length, width).flatten(1)


def beam_hits(table: torch.Tensor, pos: torch.Tensor, orientation: torch.Tensor, firing: torch.Tensor,
              n_cols: int) -> torch.Tensor:
    """Cells hit by the firing agents' beams, `[B, H*W]` bool, from a `beam_table`. Only the firing
    agents' rows are looked up (usually a small fraction of B x N)."""
    copy, agent = firing.nonzero(as_tuple=True)
    rows = flat_index(pos[copy, agent], n_cols) * 4 + orientation[copy, agent]
    hits = torch.zeros(pos.shape[0], table.shape[1], dtype=torch.uint8, device=pos.device)
    hits.index_put_((copy,), table[rows].to(torch.uint8), accumulate=True)
    return hits > 0


# --- neighbourhoods (who communicates with whom) --------------------------------------------------

def chain_adjacency(n_agents: int, device=None) -> torch.Tensor:
    """Line graph 0 - 1 - ... - (N-1), `[N, N]` bool, no self loops."""
    idx = torch.arange(n_agents, device=device)
    return (idx.unsqueeze(0) - idx.unsqueeze(1)).abs() == 1


def full_adjacency(n_agents: int, device=None) -> torch.Tensor:
    """Every agent neighbours every other, `[N, N]` bool, no self loops."""
    return ~torch.eye(n_agents, dtype=torch.bool, device=device)
