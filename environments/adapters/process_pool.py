"""Batching for libraries that simulate one environment at a time: copies stepped in worker processes.

The batched contract (environments/base.py) wants `n_envs` copies stepped together. A library such
as MPE2, RWARE or MaMuJoCo simulates one environment per object, so this module holds the copies:

- `CopyEnv`: the small interface an adapter writes for one copy of its library's environment (numpy
  in, numpy out, one copy, no batching, no auto-reset).
- `ProcessPool`: `n_envs` copies spread over `n_workers` worker processes (or stepped in this process
  when `n_workers == 0`). Observations, states, masks, rewards and flags travel through one block of
  shared memory; a pipe per worker carries only the command and the (rare) episode-end infos. Copies
  that finish an episode are reset inside the worker, in the same step, and their last observation
  is kept as the final one.
- `PooledEnv`: a `BatchedEnv` over a `ProcessPool` (team reward, episode statistics, TimeStep); an
  adapter only builds its `EnvSpec` and a picklable factory of `CopyEnv`s.

Seeding: episode k of copy i is reset with the seed `episode_seed(seed, i, k)` (a SeedSequence of the
three numbers), and a library's own randomness during an episode comes from the generator that reset
seeded. A copy's stream therefore depends on (seed, copy index, episode index) only: results are the
same whatever the number of workers, and copies never share a random stream.

Resume (`state_dict`/`load_state_dict`): when every copy implements `get_state`/`set_state`, the
snapshot holds each copy's full simulator state and resuming continues bit-for-bit. Where a copy's
library cannot snapshot its state (`CopyEnv.supports_snapshot` is False), the pool saves
only the episode counters, and `load_state_dict` starts every copy on its
next episode (seeded as above): the episodes in progress at the checkpoint are dropped and never
reported, later episodes are the ones an uninterrupted run would not have seen at those steps.
`ProcessPool.exact_resume` says which of the two a pool has; `PooledEnv.state_dict()["exact"]` too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing as mp
import os
import tempfile
import traceback
import uuid
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch

from coopbench.base.errors import CoopbenchError
from environments.base import BatchedEnv, EnvSpec, EpisodeTracker, TimeStep

WORKERS_ENV_VAR = "COOPBENCH_ENV_WORKERS"
START_METHOD_ENV_VAR = "COOPBENCH_ENV_START_METHOD"


def episode_seed(seed: int, copy_index: int, episode_index: int) -> int:
    """The reset seed of episode `episode_index` of copy `copy_index` (a 32-bit int, from SeedSequence)."""
    return int(np.random.SeedSequence([seed, copy_index, episode_index]).generate_state(1, dtype=np.uint32)[0])


class CopyObs(NamedTuple):
    """What one copy shows after a reset or a step."""

    obs: np.ndarray  # [N, obs_dim] float32
    state: np.ndarray  # [state_dim] float32
    avail: np.ndarray | None = None  # [N, n_actions] bool, or None when every action is always available


class CopyStep(NamedTuple):
    observation: CopyObs
    # [N] per-agent rewards in the contract's convention, or one float: the team reward, given to every agent
    reward: np.ndarray | float
    terminated: bool
    truncated: bool
    info: dict[str, float] | None = None  # read only at the end of an episode (e.g. {"won": 1.0})


class CopyEnv(ABC):
    """One copy of a single-environment library, as a pool worker drives it.

    `reset(seed)` starts an episode from that seed; `step(action)` takes `[N]` int64 (discrete) or
    `[N, action_dim]` float32 (continuous, already clipped) and never auto-resets; the action array is
    the pool's buffer row, the same object every step (read it during `step`, copy what you keep). Override
    `get_state`/`set_state` (and set `supports_snapshot = True`) to make resumption exact: the
    snapshot is nested dicts/lists of numpy arrays, Python scalars and strings only (the pool turns
    arrays into tensors so that checkpoints load with `torch.load(weights_only=True)`).
    """

    supports_snapshot = False

    @abstractmethod
    def reset(self, seed: int) -> CopyObs: ...

    @abstractmethod
    def step(self, action: np.ndarray) -> CopyStep: ...

    # Called only when `supports_snapshot` is True (the pool checks); a copy without snapshots never gets here.
    def get_state(self) -> Any:
        raise RuntimeError(f"{type(self).__name__} cannot snapshot its simulator (supports_snapshot is False)")

    def set_state(self, state: Any) -> None:
        raise RuntimeError(f"{type(self).__name__} cannot restore a simulator snapshot (supports_snapshot is False)")

    def close(self) -> None:  # noqa: B027 - optional hook
        pass

    def render_rgb(self) -> np.ndarray | None:
        """Optional: a picture of this copy as it is now, `[H, W, 3]` uint8 (`BatchedEnv.render_rgb`); None
        where the library draws nothing. A CoopbenchError raised here reaches the caller as itself, also from a
        worker process."""
        return None


@dataclass(frozen=True)
class Layout:
    """Shapes of what one copy exchanges: the pool's shared buffers are laid out from these."""

    n_agents: int
    obs_dim: int
    state_dim: int
    n_actions: int = 0  # discrete actions per agent; 0 for continuous
    action_dim: int = 0  # continuous action dimension; 0 for discrete
    has_avail: bool = False
    reward_mode: str = "team"  # how the team reward sums per-agent rewards (environments.base.team_return)

    @classmethod
    def from_spec(cls, spec: EnvSpec) -> Layout:
        return cls(spec.n_agents, spec.obs_dim, spec.state_dim, spec.n_actions, spec.action_dim, spec.has_action_mask,
                   spec.reward_mode)

    def fields(self, n: int) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        f32, u8 = np.dtype(np.float32), np.dtype(np.bool_)
        action = ((n, self.n_agents), np.dtype(np.int64)) if self.n_actions else (
            (n, self.n_agents, self.action_dim), f32)
        out = {
            "obs": ((n, self.n_agents, self.obs_dim), f32),
            "state": ((n, self.state_dim), f32),
            "final_obs": ((n, self.n_agents, self.obs_dim), f32),
            "final_state": ((n, self.state_dim), f32),
            "reward": ((n, self.n_agents), f32),
            "terminated": ((n,), u8),
            "truncated": ((n,), u8),
            # the step's team reward in float64, from the copy's own reward (a library's float is not rounded to
            # float32 first): PooledEnv's EpisodeTracker sums it into the episode returns
            "team_reward": ((n,), np.dtype(np.float64)),
            "action": action,
        }
        if self.has_avail:
            out["avail"] = ((n, self.n_agents, self.n_actions), u8)
            out["final_avail"] = ((n, self.n_agents, self.n_actions), u8)
        return out


def _offsets(layout: Layout, n: int) -> list[tuple[str, int, int, np.dtype, tuple[int, ...]]]:
    """(name, byte offset, byte size, dtype, shape) of every field, cache-line aligned."""
    out, offset = [], 0
    for name, (shape, dtype) in layout.fields(n).items():
        offset = -(-offset // 64) * 64
        size = int(np.prod(shape)) * dtype.itemsize
        out.append((name, offset, size, dtype, shape))
        offset += size
    return out


def _nbytes(layout: Layout, n: int) -> int:
    name, offset, size, dtype, shape = _offsets(layout, n)[-1]
    return offset + size


def _views(offsets, backing: np.ndarray) -> dict[str, np.ndarray]:
    """Every field as a view on `backing` (uint8 bytes: shared memory, or a private copy of it)."""
    return {name: np.ndarray(shape, dtype, backing, o) for name, o, size, dtype, shape in offsets}


class _Runner:
    """Steps a contiguous range of copies on a set of buffers (in a worker, or in-process)."""

    def __init__(self, make_copy: Callable[[], CopyEnv], first: int, count: int, seed: int,
                 buffers: dict[str, np.ndarray], layout: Layout):
        self.copies = [make_copy() for _ in range(count)]
        self.first, self.seed, self.buf, self.layout = first, seed, buffers, layout
        self.episodes = [0] * count  # episodes started so far, per copy
        self.private = layout.reward_mode == "private"
        # each copy's action row, the same view every step (a copy may build its library's action
        # structure on it once, e.g. a dict of per-agent views)
        self.action_rows = [buffers["action"][first + j] for j in range(count)]
        self.views = (buffers["obs"], buffers["state"], buffers.get("avail"))
        self.final_views = (buffers["final_obs"], buffers["final_state"], buffers.get("final_avail"))

    def _write_view(self, i: int, ob: CopyObs, final: bool = False) -> None:
        """Write one copy's observation, state (and masks) into row `i` of the current or the final
        buffers (row assignment: cheaper than stacking every copy's arrays and writing the stack)."""
        obs, state, avail = self.final_views if final else self.views
        obs[i] = ob.obs
        state[i] = ob.state
        if avail is not None:
            avail[i] = True if ob.avail is None else ob.avail

    def _start_episode(self, j: int) -> CopyObs:
        ob = self.copies[j].reset(episode_seed(self.seed, self.first + j, self.episodes[j]))
        self.episodes[j] += 1
        return ob

    def reset(self) -> None:
        for j in range(len(self.copies)):
            self._write_view(self.first + j, self._start_episode(j))
        rows = slice(self.first, self.first + len(self.copies))
        for name, value in (("reward", 0.0), ("terminated", False), ("truncated", False), ("team_reward", 0.0)):
            self.buf[name][rows] = value

    def step(self) -> dict[int, dict[str, float]]:
        """Step every copy with its action in the buffer; write what they show; reset finished ones.

        The team reward is computed here (the copy's own float or per-agent array, before float32 rounding);
        the parent's EpisodeTracker sums it into episode statistics. final_* rows are written for the copies
        that finished only (the parent reads them only then).
        This loop is the adapters' per-copy overhead: it writes rows in place and keeps per-copy
        Python work to a few operations.
        """
        infos = {}
        buf, first, n, private = self.buf, self.first, self.layout.n_agents, self.private
        action_rows, reward_rows = self.action_rows, buf["reward"]
        terminated, truncated = buf["terminated"], buf["truncated"]
        team_rows = buf["team_reward"]
        for j, copy in enumerate(self.copies):
            i = first + j
            ob, reward, term, trunc, info = copy.step(action_rows[j])
            reward_rows[i] = reward
            if isinstance(reward, float):  # the team reward, to every agent
                team_rows[i] = reward * n if private else reward
            else:
                team_rows[i] = float(reward.sum()) if private else float(reward.sum()) / n
            terminated[i], truncated[i] = term, trunc
            if term or trunc:
                self._write_view(i, ob, final=True)
                if info:
                    infos[i] = dict(info)
                ob = self._start_episode(j)
            self._write_view(i, ob)
        return infos

    def render(self, index: int) -> np.ndarray | tuple[str, str, str | None]:
        """Copy `index`'s picture, or ("error", problem, fix) for a CoopbenchError (it crosses the pipe as data)."""
        try:
            return self.copies[index - self.first].render_rgb()
        except CoopbenchError as err:
            return ("error", err.problem, err.fix)

    def get_state(self) -> dict:
        snapshots = [copy.get_state() for copy in self.copies] if self.supports_snapshot else None
        return {"episodes": list(self.episodes), "copies": snapshots}

    @property
    def supports_snapshot(self) -> bool:
        return all(copy.supports_snapshot for copy in self.copies)

    def set_state(self, state: dict) -> None:
        self.seed = int(state["seed"])
        self.episodes = list(state["episodes"])
        if state["copies"] is not None:
            for copy, snapshot in zip(self.copies, state["copies"], strict=True):
                copy.set_state(snapshot)
        else:  # no snapshot: every copy starts its next episode (see the module docstring)
            self.reset()

    def close(self) -> None:
        for copy in self.copies:
            copy.close()


def _worker_main(conn, make_copy, first: int, count: int, seed: int, shm_path: str, n_total: int,
                 layout: Layout) -> None:
    try:
        backing = np.memmap(shm_path, dtype=np.uint8, mode="r+", shape=(_nbytes(layout, n_total),))
        runner = _Runner(make_copy, first, count, seed, _views(_offsets(layout, n_total), backing), layout)
        conn.send(("ready", runner.supports_snapshot))
    except BaseException:  # noqa: BLE001 - reported to the parent, which raises it
        conn.send(("error", traceback.format_exc()))
        return
    while True:
        try:
            cmd, arg = conn.recv()
        except (EOFError, KeyboardInterrupt):
            break
        try:
            if cmd == "step":
                conn.send(("ok", runner.step()))
            elif cmd == "reset":
                runner.reset()
                conn.send(("ok", None))
            elif cmd == "get_state":
                conn.send(("ok", runner.get_state()))
            elif cmd == "render":
                conn.send(("ok", runner.render(arg)))
            elif cmd == "set_state":
                runner.set_state(arg)
                conn.send(("ok", None))
            elif cmd == "close":
                runner.close()
                conn.send(("ok", None))
                break
            else:
                raise ValueError(f"unknown command {cmd!r}")
        except BaseException:  # noqa: BLE001
            conn.send(("error", traceback.format_exc()))
    conn.close()


def _to_torch(value):
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value).copy())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: _to_torch(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_torch(v) for v in value)
    return value


def _to_numpy(value):
    if isinstance(value, torch.Tensor):
        return value.cpu().numpy()
    if isinstance(value, dict):
        return {k: _to_numpy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_numpy(v) for v in value)
    return value


class PoolStep(NamedTuple):
    """One step of every copy, as tensors (the finished copies already reset)."""

    obs: torch.Tensor  # [B, N, obs_dim]
    state: torch.Tensor  # [B, state_dim]
    avail: torch.Tensor | None  # [B, N, n_actions] bool
    reward: torch.Tensor  # [B, N]
    terminated: torch.Tensor  # [B] bool
    truncated: torch.Tensor  # [B] bool
    final_obs: torch.Tensor  # [B, N, obs_dim]: the finished episode's last observation where done, else obs
    final_state: torch.Tensor
    final_avail: torch.Tensor | None
    team_reward: torch.Tensor  # [B] float64: the step's team reward (the team return's increment)
    infos: dict[int, dict[str, float]]  # copy index -> the info its finished episode ended with


def default_workers(n_envs: int) -> int:
    """`$COOPBENCH_ENV_WORKERS` if set, else one worker per usable core (at most one per copy)."""
    if os.environ.get(WORKERS_ENV_VAR):
        return max(0, min(int(os.environ[WORKERS_ENV_VAR]), n_envs))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, n_envs))


def _shm_dir() -> str:
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()


class ProcessPool:
    """`n_envs` copies of a `CopyEnv`, stepped together (see the module docstring).

    make_copy: a picklable zero-argument callable returning a fresh `CopyEnv` (e.g. a
        `functools.partial` of a module-level class); called once per copy inside its worker.
    layout: the shapes every copy uses (`Layout.from_spec(spec)`).
    n_workers: worker processes; 0 steps the copies in this process (no IPC, for tests and for
        measuring overhead); None means `default_workers(n_envs)`.
    start_method: multiprocessing start method; None means `$COOPBENCH_ENV_START_METHOD` or
        "forkserver" (workers are forked from a clean single-threaded server, which is safe next to
        torch's threads and quick after the first pool).
    clip: (low, high) that continuous actions are clipped to on their way to the copies.
    """

    def __init__(self, make_copy: Callable[[], CopyEnv], layout: Layout, n_envs: int, seed: int,
                 n_workers: int | None = None, start_method: str | None = None,
                 clip: tuple[float, float] | None = None):
        self.layout, self.n_envs, self.seed, self.clip = layout, n_envs, seed, clip
        self.n_workers = default_workers(n_envs) if n_workers is None else min(n_workers, n_envs)
        self._offsets = _offsets(layout, n_envs)
        by_name = {name: (offset, dtype, shape) for name, offset, _, dtype, shape in self._offsets}
        # (offset, dtype, shape) of what every step returns, in the order `_read` unpacks them
        self._read_fields = [by_name[name] for name in ("obs", "state", "reward", "terminated", "truncated",
                                                        "team_reward",
                                                        *(("avail",) if layout.has_avail else ()))]
        self._final_fields = [f for f in self._offsets if f[0].startswith("final_")]
        self._done_offsets = (by_name["terminated"][0], by_name["truncated"][0])
        self._conns: list = []
        self._procs: list = []
        self._runner: _Runner | None = None
        self._closed = False
        if self.n_workers == 0:
            self._backing = np.zeros(_nbytes(layout, n_envs), np.uint8)
            self.buf = _views(self._offsets, self._backing)
            self._runner = _Runner(make_copy, 0, n_envs, seed, self.buf, layout)
            self.exact_resume = self._runner.supports_snapshot
        else:
            self._start_workers(make_copy, start_method or os.environ.get(START_METHOD_ENV_VAR) or "forkserver")
        self._action_tensor = torch.from_numpy(self.buf["action"])  # shares the buffer
        self._finalizer = weakref.finalize(self, ProcessPool._shutdown, self._conns, self._procs)

    # --- workers ---------------------------------------------------------------------------------
    def _start_workers(self, make_copy, start_method: str) -> None:
        ctx = mp.get_context(start_method)
        if start_method == "forkserver":
            # The server imports these once; every worker forked from it starts with them loaded.
            ctx.set_forkserver_preload(["numpy", "torch", "environments.adapters.process_pool"])
        path = os.path.join(_shm_dir(), f"coopbench-pool-{os.getpid()}-{uuid.uuid4().hex}")
        self._backing = np.memmap(path, dtype=np.uint8, mode="w+", shape=(_nbytes(self.layout, self.n_envs),))
        self._backing = self._backing.view(np.ndarray)  # plain ndarray view: copies are plain arrays
        try:
            self.buf = _views(self._offsets, self._backing)
            bounds = np.linspace(0, self.n_envs, self.n_workers + 1).round().astype(int)
            for w in range(self.n_workers):
                parent, child = ctx.Pipe()
                first, count = int(bounds[w]), int(bounds[w + 1] - bounds[w])
                proc = ctx.Process(target=_worker_main, name=f"coopbench-env-{w}", daemon=True,
                                   args=(child, make_copy, first, count, self.seed, path, self.n_envs, self.layout))
                proc.start()
                child.close()
                self._conns.append(parent)
                self._procs.append(proc)
            # "ready" with whether the worker's copies can snapshot, or the worker's construction error
            self.exact_resume = all([self._receive(w) for w in range(self.n_workers)])
        except BaseException:
            ProcessPool._shutdown(self._conns, self._procs)
            raise
        finally:
            os.unlink(path)  # the mappings stay valid; nothing is left in /dev/shm, even after a crash

    def _receive(self, w: int):
        status, payload = self._receive_raw(w)
        if status != "ok" and status != "ready":
            raise RuntimeError(payload)
        return payload

    def _receive_raw(self, w: int) -> tuple[str, Any]:
        try:
            status, payload = self._conns[w].recv()
        except (EOFError, ConnectionResetError):
            self._procs[w].join(timeout=5)
            return "error", f"environment worker {w} died (exit code {self._procs[w].exitcode})"
        if status == "error":
            return status, f"environment worker {w} failed:\n{payload}"
        return status, payload

    def _broadcast(self, cmd: str, args: list | None = None) -> list:
        if self._closed:
            raise RuntimeError("the process pool is closed")
        if self._runner is not None:
            runner = self._runner
            handler = {"step": lambda _: runner.step(), "reset": lambda _: runner.reset(),
                       "get_state": lambda _: runner.get_state(), "set_state": runner.set_state}[cmd]
            return [handler(args[0] if args else None)]
        for w, conn in enumerate(self._conns):
            conn.send((cmd, args[w] if args else None))
        replies = [self._receive_raw(w) for w in range(len(self._conns))]  # every reply, to stay in step
        for status, payload in replies:
            if status == "error":
                raise RuntimeError(payload)
        return [payload for _, payload in replies]

    @staticmethod
    def _shutdown(conns, procs) -> None:
        for conn in conns:
            with contextlib.suppress(Exception):
                conn.send(("close", None))
        for conn in conns:
            with contextlib.suppress(Exception):
                if conn.poll(5):
                    conn.recv()
            with contextlib.suppress(Exception):
                conn.close()
        for proc in procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5)
        conns.clear()
        procs.clear()

    # --- the pool's API --------------------------------------------------------------------------
    def _read(self, infos: dict) -> PoolStep:
        # One copy of the block (the buffers change on the next step), tensor views of the fields on it.
        # This runs on every step of every pooled adapter: a list and count_nonzero, not a dict and `|`/any()
        # (a measurable share of the light libraries' steps; benchmarks/README.md).
        block = self._backing.copy()
        obs, state, reward, terminated, truncated, team_reward, *avail = [
            torch.from_numpy(np.ndarray(shape, dtype, block, o)) for o, dtype, shape in self._read_fields]
        avail = avail[0] if avail else None
        final_obs, final_state, final_avail = obs, state, avail
        (a, b), n = self._done_offsets, self.n_envs
        if np.count_nonzero(block[a:a + n]) or np.count_nonzero(block[b:b + n]):
            # The final_* rows hold the finished copies' last views (written for them only); the running copies'
            # rows are filled from the current ones, in numpy on this private block (cheaper than torch's clone and
            # indexed writes, and Walker2d or Hopper finish an episode every few steps).
            running = (block[a:a + n] | block[b:b + n]) == 0
            finals = _views(self._final_fields, block)
            for name, current in (("final_obs", obs), ("final_state", state), ("final_avail", avail)):
                if current is not None:
                    np.copyto(finals[name], current.numpy(), where=running.reshape(-1, *[1] * (current.dim() - 1)))
            final_obs, final_state = torch.from_numpy(finals["final_obs"]), torch.from_numpy(finals["final_state"])
            final_avail = None if avail is None else torch.from_numpy(finals["final_avail"])
        return PoolStep(obs, state, avail, reward, terminated, truncated, final_obs, final_state, final_avail,
                        team_reward, infos)

    def reset(self) -> PoolStep:
        """Start a new episode in every copy."""
        self._broadcast("reset")
        return self._read({})

    def step(self, actions: np.ndarray | torch.Tensor) -> PoolStep:
        """One joint action per copy (`[B, N]` or `[B, N, action_dim]`); finished copies reset themselves."""
        if isinstance(actions, torch.Tensor):  # one copy into the buffer (any device, any dtype), one clamp
            self._action_tensor.copy_(actions.detach())
            if self.clip is not None:
                self._action_tensor.clamp_(self.clip[0], self.clip[1])
        elif self.clip is not None:
            np.clip(actions, self.clip[0], self.clip[1], out=self.buf["action"])
        else:
            self.buf["action"][...] = actions
        if self._runner is not None and not self._closed:  # in-process: no dispatch
            return self._read(self._runner.step())
        infos: dict[int, dict[str, float]] = {}
        for part in self._broadcast("step"):
            infos.update(part)
        return self._read(infos)

    def render(self, index: int) -> np.ndarray | None:
        """The picture of copy `index` (`CopyEnv.render_rgb`; None: it draws none), asked of the one worker that
        holds it."""
        if not 0 <= index < self.n_envs:
            raise ValueError(f"copy index {index} out of range: the pool holds {self.n_envs} copies")
        if self._runner is not None:
            result = self._runner.render(index)
        else:
            bounds = np.linspace(0, self.n_envs, self.n_workers + 1).round().astype(int)
            w = int(np.searchsorted(bounds, index, side="right")) - 1
            self._conns[w].send(("render", index))
            result = self._receive(w)
        if isinstance(result, tuple):
            raise CoopbenchError(result[1], result[2])
        return result

    def state_dict(self) -> dict:
        """Episode counters and (where the copies can) their simulator snapshots, as tensors/scalars."""
        parts = self._broadcast("get_state")
        gather = lambda key: [x for part in parts for x in part[key]]  # noqa: E731
        copies = None if any(p["copies"] is None for p in parts) else gather("copies")
        return {"seed": self.seed, "episodes": torch.tensor(gather("episodes"), dtype=torch.long),
                "copies": _to_torch(copies), "exact": copies is not None}

    def load_state_dict(self, state: dict) -> None:
        episodes = state["episodes"].tolist()
        if len(episodes) != self.n_envs:
            raise ValueError(f"state holds {len(episodes)} copies, this pool {self.n_envs}")
        copies = _to_numpy(state["copies"]) if state["copies"] is not None and self.exact_resume else None
        n_parts = 1 if self._runner is not None else self.n_workers
        bounds = np.linspace(0, self.n_envs, n_parts + 1).round().astype(int)
        self.seed = int(state["seed"])
        args = [{"seed": self.seed, "episodes": episodes[a:b], "copies": None if copies is None else copies[a:b]}
                for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        self._broadcast("set_state", args)

    def close(self) -> None:
        if self._closed:
            return
        if self._runner is not None:
            self._runner.close()
        self._finalizer()
        self._closed = True


class PooledEnv(BatchedEnv):
    """A `BatchedEnv` over a `ProcessPool`: what a non-vectorized library adapter subclasses.

    A subclass builds its `EnvSpec` and passes a picklable `make_copy`; continuous actions are
    clipped to `[spec.action_low, spec.action_high]`. Episode statistics are the base's EpisodeTracker over
    the copies' team rewards (`spec.reward_mode`, environments.base.team_return), summed in float64 as the
    libraries give them. The time limit is the library's (its own horizon ends the copy's episode inside the
    worker, as a truncation). `episode_info_keys` name the episode-end infos that become `TimeStep.extras`
    (NaN where no episode ended), e.g. ("won",).
    """

    def __init__(self, spec: EnvSpec, make_copy: Callable[[], CopyEnv], n_envs: int, seed: int,
                 device: str | torch.device = "cpu", n_workers: int | None = None, start_method: str | None = None,
                 episode_info_keys: tuple[str, ...] = (), name: str | None = None):
        super().__init__(n_envs, seed, device, name or spec.name)
        self.spec = dataclasses.replace(spec, name=self.name)  # the registry key the task was built by
        self.episode_info_keys = episode_info_keys
        clip = None if spec.discrete else (spec.action_low, spec.action_high)
        self.pool = ProcessPool(make_copy, Layout.from_spec(spec), n_envs, seed, n_workers, start_method, clip)
        self.tracker = EpisodeTracker(n_envs, torch.device("cpu"), dtype=torch.float64)

    def _timestep(self, ps: PoolStep, first: bool = False) -> TimeStep:
        if first:
            self.tracker.reset()
            episode_return = episode_length = torch.full((self.n_envs,), float("nan"))
        else:
            finished_return, finished_length = self.tracker.update(ps.team_reward, ps.terminated | ps.truncated)
            episode_return, episode_length = finished_return.float(), finished_length.float()
        extras = {}
        for key in self.episode_info_keys:
            values = torch.full((self.n_envs,), float("nan"))
            for i, info in ps.infos.items():
                if key in info:
                    values[i] = float(info[key])
            extras[key] = values
        timestep = TimeStep(ps.obs, ps.state, ps.avail, ps.reward, ps.terminated, ps.truncated, ps.final_obs,
                            ps.final_state, episode_return, episode_length, extras)
        if self.device.type == "cpu":
            return timestep
        move = lambda x: None if x is None else x.to(self.device)  # noqa: E731
        return TimeStep(**{f: (move(v) if f != "extras" else {k: move(e) for k, e in v.items()})
                           for f, v in vars(timestep).items()})

    def reset(self) -> TimeStep:
        return self._timestep(self.pool.reset(), first=True)

    def step(self, actions: torch.Tensor) -> TimeStep:
        return self._timestep(self.pool.step(actions))

    def state_dict(self) -> dict:
        return {**super().state_dict(), "pool": self.pool.state_dict(), "exact": self.pool.exact_resume,
                "tracker": self.tracker.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.pool.load_state_dict(state["pool"])
        if not (self.pool.exact_resume and state["pool"]["copies"] is not None):
            self.tracker.reset()  # every copy started its next episode (see the module docstring)
        elif "tracker" in state:
            self.tracker.load_state_dict(state["tracker"])
        else:  # a checkpoint from before the tracker moved here: the workers kept the running statistics
            self.tracker.load_state_dict({"returns": state["pool"]["returns"], "lengths": state["pool"]["lengths"]})

    def render_rgb(self, index: int = 0) -> np.ndarray:
        frame = self.pool.render(index)
        return super().render_rgb(index) if frame is None else frame  # None: the base class's "cannot render"

    def close(self) -> None:
        self.pool.close()
