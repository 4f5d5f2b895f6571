"""BN 6.2.1 continuous Predator-Prey: 15 controllable predators chase uncontrollable, faster prey.

BN's Predator-Prey has N = 15 predators and "multiple uncontrollable preys moving in a 2D space",
stochastic initial positions and continuous movement, trained with MADDPG and a GCN critic with max
pooling (BN Table 2), i.e. the PIC setup (Liu et al., CoRL 2019), whose `simple_tag_n15` scenario
of the Multi-Agent Particle Environment (MPE) has 15 predators, 5 prey and 5 landmarks. This is that
scenario written batched in torch, with MPE's physics:

- entities: predators (radius 0.02, acceleration 3, top speed 1), prey (radius 0.01, acceleration 4,
  top speed 1.3), immovable landmarks (radius 0.1); everything collides with everything;
- per step (dt = 0.1): force = action * acceleration + soft contact forces
  (contact_force * delta / dist * k * log(1 + exp(-(dist - dist_min) / k)), k = 1e-3,
  contact_force = 100); velocity <- velocity * (1 - 0.25) + force * dt (unit mass), clipped to the
  top speed; position <- position + velocity * dt;
- team reward after the move: -0.1 * sum over prey of the distance to its nearest predator, plus 10
  per (predator, prey) pair closer than the sum of their radii (0.03); every predator gets it;
- a predator observes its velocity and position, the positions relative to it of the 3 nearest
  landmarks, the 6 nearest other predators and the 3 nearest prey, and those prey's velocities (34;
  each group as x components then y components, where PIC interleaves (x, y) pairs);
- episodes start from positions uniform in [-1, 1]^2 (landmarks in [-0.9, 0.9]^2), zero velocities,
  and last 25 steps (BN Table 2); the end is a truncation (time is not observed).

Where we differ from PIC, and why: PIC's prey are driven by a pretrained network checkpoint we do
not have; ours follow a scripted escape policy (`prey_policy`, see `_prey_actions`). PIC ranks
"nearest" entities by |relative position - own position| (a slip); we rank by true distance. PIC's
vectorized contact force uses twice the predator radius as the contact distance of every pair; we
use MPE's sum of the two radii, so landmarks are solid at their radius.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from environments import rendering as rd
from environments.base import EnvSpec, TaskEnv

DT = 0.1
DAMPING = 0.25
CONTACT_FORCE = 100.0
CONTACT_MARGIN = 1e-3
NEGLIGIBLE_Z = 20.0  # pairs farther than 20 contact margins past touching push with < 2e-10: skipped


class PredatorPreyParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n_predators: int = Field(15, ge=2, le=64)
    n_prey: int = Field(5, ge=1, le=64)
    n_landmarks: int = Field(5, ge=0, le=64)
    episode_length: int = Field(25, ge=1)
    predator_size: float = Field(0.02, gt=0)
    prey_size: float = Field(0.01, gt=0)
    landmark_size: float = Field(0.1, gt=0)
    predator_accel: float = Field(3.0, gt=0)
    prey_accel: float = Field(4.0, gt=0)
    predator_max_speed: float = Field(1.0, gt=0)
    prey_max_speed: float = Field(1.3, gt=0)
    visible_landmarks: int = Field(3, ge=0)
    visible_predators: int = Field(6, ge=0)
    visible_prey: int = Field(3, ge=1)
    catch_reward: float = 10.0
    distance_coef: float = Field(0.1, ge=0)
    prey_policy: Literal["flee", "random"] = "flee"
    prey_noise: float = Field(0.3, ge=0, description="std of Gaussian noise on the flee direction")

    @model_validator(mode="after")
    def _check(self):
        if self.visible_landmarks > self.n_landmarks:
            raise ValueError("visible_landmarks must be at most n_landmarks")
        if self.visible_predators > self.n_predators - 1:
            raise ValueError("visible_predators must be at most n_predators - 1")
        if self.visible_prey > self.n_prey:
            raise ValueError("visible_prey must be at most n_prey")
        return self


class PredatorPrey(TaskEnv):
    Params = PredatorPreyParams
    NAME = "particle/bn-predator-prey-15"
    # the contact forces' softplus runs over the near pairs of all copies, its scalar tail wherever their count puts
    # it: a seed's rows would round by where they fall in a merged seed batch
    SEED_MERGE = False
    STATE_KEYS = ("x", "y", "vx", "vy", "lx", "ly")  # movers (predators, then prey) and landmarks, as x/y planes

    def __init__(self, n_envs: int, seed: int, device="cpu", name: str | None = None, **params):
        p = PredatorPreyParams(**params)
        super().__init__(n_envs, seed, device, p.episode_length, name)
        self.params = p
        self.n_agents = p.n_predators
        self.n_movers = p.n_predators + p.n_prey
        dev = self.device
        sizes = torch.cat([torch.full((p.n_predators,), p.predator_size), torch.full((p.n_prey,), p.prey_size),
                           torch.full((p.n_landmarks,), p.landmark_size)]).to(dev)
        self._contact_dist = (sizes[: self.n_movers, None] + sizes[None, :])  # [A, E]
        # Squared distance under which a pair's contact force is evaluated (see `_move`); -1 on self pairs.
        near2 = (self._contact_dist + NEGLIGIBLE_Z * CONTACT_MARGIN).square()
        near2[:, : self.n_movers].fill_diagonal_(-1.0)
        self._near2 = near2
        self._work: tuple[torch.Tensor, ...] | None = None  # scratch buffers of the pairwise step
        self._index_add = self.device.type == "cpu"  # how pair forces are summed per mover (see `_move`)
        self._accel = torch.cat([torch.full((p.n_predators,), p.predator_accel),
                                 torch.full((p.n_prey,), p.prey_accel)]).to(dev)
        self._max_speed = torch.cat([torch.full((p.n_predators,), p.predator_max_speed),
                                     torch.full((p.n_prey,), p.prey_max_speed)]).to(dev)
        self._catch_dist = p.predator_size + p.prey_size
        self._self_pred = torch.eye(p.n_predators, dtype=torch.bool, device=dev).unsqueeze(1)  # [M, 1, P]
        # Positions and velocities as separate x and y planes `[B, A]` (movers: predators then prey), which
        # keeps every pairwise operation a dense elementwise one; `pos`/`vel` give the `[B, A, 2]` view.
        zeros = torch.zeros(n_envs, self.n_movers, device=dev)
        self.x, self.y, self.vx, self.vy = zeros, zeros.clone(), zeros.clone(), zeros.clone()
        self.lx = torch.zeros(n_envs, p.n_landmarks, device=dev)
        self.ly = self.lx.clone()
        self._after_move: tuple | None = None  # (obs, state) of the state `_transition` produced
        obs_dim = 4 + 2 * (p.visible_landmarks + p.visible_predators + 2 * p.visible_prey)
        self.spec = EnvSpec(
            name=self.name,
            family="particle",
            n_agents=p.n_predators,
            obs_dim=obs_dim,
            state_dim=4 * self.n_movers + 2 * p.n_landmarks,
            n_actions=0,
            episode_limit=p.episode_length,
            reward_mode="team",
            action_dim=2,
            action_low=-1.0,
            action_high=1.0,
            return_bounds=None,
            description=f"BN 6.2.1 / PIC simple_tag: {p.n_predators} predators, {p.n_prey} scripted prey, "
                        f"{p.n_landmarks} landmarks",
        )

    @staticmethod
    def positions_from_views(obs: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """`[..., P, 2]`: the predators' positions, the state's first 2P numbers (BN B.3's Euclidean scores)."""
        return state[..., : 2 * obs.shape[-2]].unflatten(-1, (obs.shape[-2], 2))

    @property
    def pos(self) -> torch.Tensor:
        return torch.stack([self.x, self.y], dim=-1)

    @property
    def vel(self) -> torch.Tensor:
        return torch.stack([self.vx, self.vy], dim=-1)

    @property
    def landmarks(self) -> torch.Tensor:
        return torch.stack([self.lx, self.ly], dim=-1)

    def render_rgb(self, index: int = 0) -> np.ndarray:
        """Copy `index` in [-1.5, 1.5]^2: landmarks grey, prey red, predator k a disc in its colour (true
        sizes, but at least 3 px in radius)."""
        i = rd.check_index(self, index)
        p = self.params
        landmarks = zip(self.lx[i].tolist(), self.ly[i].tolist(), strict=True)
        points = [(x, y, p.landmark_size, rd.WALL) for x, y in landmarks]
        xs, ys = self.x[i].tolist(), self.y[i].tolist()
        points += [(xs[k], ys[k], p.prey_size, rd.APPLE) for k in range(p.n_predators, self.n_movers)]
        points += [(xs[k], ys[k], p.predator_size, rd.agent_colour(k)) for k in range(p.n_predators)]
        return rd.points_frame(points, (-1.5, 1.5, -1.5, 1.5), size=(400, 400))

    # --- episode start --------------------------------------------------------------------------
    def _fresh(self) -> dict[str, torch.Tensor]:
        """A new episode for every copy: movers uniform in [-1, 1]^2 at rest, landmarks in [-0.9, 0.9]^2."""
        movers = 2 * self.random.rand(self.n_movers, 2) - 1
        landmarks = (2 * self.random.rand(self.params.n_landmarks, 2) - 1) * 0.9
        x, y = movers[..., 0].contiguous(), movers[..., 1].contiguous()
        return {"x": x, "y": y, "lx": landmarks[..., 0].contiguous(), "ly": landmarks[..., 1].contiguous(),
                "vx": torch.zeros_like(x), "vy": torch.zeros_like(y)}

    # --- dynamics -------------------------------------------------------------------------------
    def _prey_actions(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Scripted prey controls (ux, uy) `[B, Y]`, in the unit disc.

        `flee`: head away from the predators, each weighted by 1 / distance^2 (so the nearest dominate),
        turned back from the edge beyond |x| = 0.8 (PIC's prey are penalized for leaving [-0.9, 0.9]),
        plus Gaussian noise of std `prey_noise` (PIC's pretrained prey also act with exploration noise).
        `random`: uniform in [-1, 1]^2.
        """
        p, n = self.params, self.params.n_predators
        if p.prey_policy == "random":
            u = 2 * self.random.rand(p.n_prey, 2) - 1
            return u[..., 0], u[..., 1]
        px, py = x[:, n:], y[:, n:]
        ax, ay = px.unsqueeze(2) - x[:, None, :n], py.unsqueeze(2) - y[:, None, :n]  # [B, Y, P]
        dist2 = (ax * ax + ay * ay).clamp_min(1e-6)
        weight = dist2.rsqrt() / dist2
        fx, fy = (ax * weight).sum(2), (ay * weight).sum(2)
        norm = (fx * fx + fy * fy).sqrt().clamp_min(1e-9)
        fx = fx / norm - torch.sign(px) * torch.relu(px.abs() - 0.8) / 0.2
        fy = fy / norm - torch.sign(py) * torch.relu(py.abs() - 0.8) / 0.2
        if p.prey_noise > 0:
            noise = p.prey_noise * self.random.randn(p.n_prey, 2)
            fx, fy = fx + noise[..., 0], fy + noise[..., 1]
        norm = (fx * fx + fy * fy).sqrt().clamp_min(1.0)
        return fx / norm, fy / norm

    def _move(self, x, y, vx, vy, lx, ly, ux, uy):
        """One MPE world step for every mover; controls (ux, uy) `[B, A]` in [-1, 1].

        MPE's contact force between entities a and b is contact_force * delta / dist * k * softplus(z),
        z = -(dist - dist_min) / k, k = 1e-3. Beyond z < -20 (20 k past contact) it is below 2e-10, far
        under float32 resolution of any velocity it is added to, so only the pairs closer than that
        (typically well under 1 %) are evaluated: the dense part is the squared distances alone.
        """
        b, a = x.shape
        dx, dy, dist2 = self._buffers(b)
        ex, ey = torch.cat([x, lx], dim=1), torch.cat([y, ly], dim=1)
        torch.sub(x.unsqueeze(2), ex.unsqueeze(1), out=dx)
        torch.sub(y.unsqueeze(2), ey.unsqueeze(1), out=dy)
        torch.mul(dx, dx, out=dist2).addcmul_(dy, dy)
        near = (dist2 < self._near2).view(-1).nonzero().squeeze(1)  # flat [B, A, E] indices; never a self pair
        dist = dist2.view(-1)[near].sqrt_().clamp_min_(1e-9)
        z = (self._contact_dist.view(-1)[near % self._contact_dist.numel()] - dist) / CONTACT_MARGIN
        scale = torch.nn.functional.softplus(z).mul_(CONTACT_FORCE * CONTACT_MARGIN).div_(dist)
        push_x, push_y = dx.view(-1)[near] * scale, dy.view(-1)[near] * scale
        if self._index_add:  # sequential, hence deterministic, on the CPU
            mover = near // self._contact_dist.shape[1]  # flat [B, A] index of the pushed entity
            fx = (ux * self._accel).view(-1).index_add_(0, mover, push_x).view(b, a)
            fy = (uy * self._accel).view(-1).index_add_(0, mover, push_y).view(b, a)
        else:  # elsewhere it is atomic and order-dependent: scatter into the zeroed buffers and sum instead
            dx.zero_().view(-1)[near] = push_x
            dy.zero_().view(-1)[near] = push_y
            fx = ux * self._accel + dx.sum(2)
            fy = uy * self._accel + dy.sum(2)
        vx = vx * (1 - DAMPING) + fx * DT
        vy = vy * (1 - DAMPING) + fy * DT
        speed = (vx * vx + vy * vy).sqrt()
        factor = torch.where(speed > self._max_speed, self._max_speed / speed.clamp_min(1e-12), 1.0)
        vx, vy = vx * factor, vy * factor
        return x + vx * DT, y + vy * DT, vx, vy

    def _buffers(self, b: int) -> tuple[torch.Tensor, ...]:
        """Scratch `[B, A, E]` buffers for the pairwise step (fresh megabyte tensors every step cost more
        than the arithmetic on them)."""
        shape = (b,) + tuple(self._contact_dist.shape)
        if self._work is None or self._work[0].shape != shape:
            self._work = tuple(torch.empty(shape, device=self.device) for _ in range(3))
        return self._work

    def _nearest(self, tx, ty, ox, oy, k: int, extras=(), exclude=None):
        """The `k` targets nearest to each predator, nearest first.

        `tx, ty` `[B, M]` are target positions, `ox, oy` `[1, B, P]` the predators'. Returns the planes
        `[k, B, P]` of the targets' relative x and y and of every `extras` `[B, M]` (a per-target value),
        plus the full relative positions `[M, B, P]`. Selection is k rounds of a minimum over the target
        dimension of packed int32 keys: the squared distance's float bits with the lowest bits replaced by
        the target index (non-negative floats order like their bits), so each round is one fast reduction
        and ties (and distances equal to within 2^-19 relative) go to the lower index. On the CPU this is
        faster than `topk`, whose cost is per row of 5 or 15.
        """
        m = tx.shape[1]
        rx, ry = tx.T.contiguous().unsqueeze(2) - ox, ty.T.contiguous().unsqueeze(2) - oy  # [M, B, P]
        dist = rx * rx + ry * ry
        if exclude is not None:
            dist.masked_fill_(exclude, float("inf"))
        bits = max(1, (m - 1).bit_length())
        index = torch.arange(m, dtype=torch.int32, device=self.device).view(m, 1, 1)
        keys = dist.view(torch.int32).bitwise_and_(-(1 << bits)).bitwise_or_(index)
        chosen = []
        for _ in range(k):
            i = keys.amin(0, keepdim=True).bitwise_and_((1 << bits) - 1).long()
            chosen.append(i)
            keys.scatter_(0, i, torch.iinfo(torch.int32).max)
        idx = torch.cat(chosen, dim=0)  # [k, B, P]
        planes = [rx.gather(0, idx), ry.gather(0, idx)]
        planes += [e.T.unsqueeze(2).expand(-1, -1, ox.shape[2]).gather(0, idx) for e in extras]
        return planes, (rx, ry)

    def _views(self, x, y, vx, vy, lx, ly):
        """Observations `[B, P, obs_dim]`, global state `[B, state_dim]`, and (team reward, catches) `[B]`.

        A predator observes PIC's features: its (vx, vy, x, y); the positions relative to it of the nearest
        landmarks, the nearest other predators and the nearest prey; those prey's velocities; nearest
        first. Each group is laid out as its x components, then its y components (PIC interleaves the
        pairs; for a network the order of inputs is immaterial, and blocks spare a copy). Built
        feature-major `[D, B, P]` and transposed once at the end.
        """
        p = self.params
        b, n = x.shape[0], p.n_predators
        ox, oy = x[:, :n].unsqueeze(0), y[:, :n].unsqueeze(0)  # [1, B, P]
        features = [vx[:, :n].unsqueeze(0), vy[:, :n].unsqueeze(0), ox, oy]
        if p.visible_landmarks:
            features += self._nearest(lx, ly, ox, oy, p.visible_landmarks)[0]
        if p.visible_predators:
            features += self._nearest(x[:, :n], y[:, :n], ox, oy, p.visible_predators, exclude=self._self_pred)[0]
        planes, (prey_rx, prey_ry) = self._nearest(x[:, n:], y[:, n:], ox, oy, p.visible_prey,
                                                   extras=(vx[:, n:], vy[:, n:]))
        features += planes
        # [D, B * P] -> [B * P, D]: a 2-D transpose copy, several times faster than permuting three dims
        obs = torch.cat(features, dim=0).view(-1, b * n).T.contiguous().view(b, n, -1)
        state = torch.cat([torch.stack([x, y], -1).flatten(1), torch.stack([vx, vy], -1).flatten(1),
                           torch.stack([lx, ly], -1).flatten(1)], dim=-1)
        prey_dist = (prey_rx * prey_rx + prey_ry * prey_ry).sqrt_()  # [Y, B, P]
        catches = (prey_dist < self._catch_dist).sum((0, 2)).to(x.dtype)
        team_reward = -p.distance_coef * prey_dist.amin(2).sum(0) + p.catch_reward * catches
        return obs, state, (team_reward, catches)

    def _observe(self) -> tuple[torch.Tensor, torch.Tensor, None]:
        if self._after_move is not None:  # computed with the reward in `_transition`: used once
            (obs, state), self._after_move = self._after_move, None
        else:
            obs, state, _ = self._views(self.x, self.y, self.vx, self.vy, self.lx, self.ly)
        return obs, state, None

    def _transition(self, actions: torch.Tensor):
        p = self.params
        u = actions.to(self.device, torch.float32).reshape(self.n_envs, p.n_predators, 2).clamp(-1.0, 1.0)
        prey_ux, prey_uy = self._prey_actions(self.x, self.y)
        ux, uy = torch.cat([u[..., 0], prey_ux], dim=1), torch.cat([u[..., 1], prey_uy], dim=1)
        self.x, self.y, self.vx, self.vy = self._move(self.x, self.y, self.vx, self.vy, self.lx, self.ly, ux, uy)
        obs, state, (team_reward, catches) = self._views(self.x, self.y, self.vx, self.vy, self.lx, self.ly)
        self._after_move = (obs, state)
        return team_reward, None, {"catches": catches}
