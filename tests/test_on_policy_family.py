"""The on-policy family (issue 5): backbone features and the members HAPPO, HATRPO, Optimistic MAPPO,
Centralized PPO and IPPO on private rewards. Maths first, then behaviour a stub cannot fake."""

import pytest
import torch
from pydantic import BaseModel, ValidationError

from algorithms.blocks.gae import rollout_gae, standardize
from algorithms.blocks.networks import AgentGRUCell, Torso
from algorithms.blocks.on_policy_config import OnPolicyConfig
from algorithms.blocks.ppo_loss import ppo_update
from algorithms.blocks.rollout import RolloutStorage, update_batch
from algorithms.blocks.sequential_update import SequentialUpdateConfig, sequential_update
from algorithms.blocks.trust_region import conjugate_gradient
from algorithms.blocks.value_norm import ValueNormalizer
from algorithms.centralized_ppo import CentralizedPPO, CentralizedPPOConfig
from algorithms.happo import HAPPO
from algorithms.hatrpo import HATRPO, HATRPOConfig
from algorithms.mappo import MAPPO
from algorithms.optimistic_mappo import OptimisticMAPPO, OptimisticMAPPOConfig, optimistic
from coopbench.base.errors import CoopbenchError
from coopbench.config import resolve
from coopbench.run import seed_everything
from environments import make
from environments.base import BatchedEnv, EnvSpec, EpisodeTracker, TimeStep
from tests.policy_probs import policy_probs

CPU = torch.device("cpu")


# --- building blocks ------------------------------------------------------------------------------
@pytest.mark.parametrize("groups", [1, 3])
def test_gru_cell_matches_torch(groups):
    torch.manual_seed(0)
    cell = AgentGRUCell(groups, 5, 4)
    x, h = torch.randn(7, 3, 5), torch.randn(7, 3, 4)
    ours = cell(x, h)
    for agent in range(3):
        g = 0 if groups == 1 else agent
        ref = torch.nn.GRUCell(5, 4)
        with torch.no_grad():  # torch stores [3H, in] in (r, z, n) order, as we do along the output axis
            ref.weight_ih.copy_(cell.input_gates.weight[g].T)
            ref.weight_hh.copy_(cell.hidden_gates.weight[g].T)
            ref.bias_ih.copy_(cell.input_gates.bias[g])
            ref.bias_hh.copy_(cell.hidden_gates.bias[g])
        assert torch.allclose(ours[:, agent], ref(x[:, agent], h[:, agent]), atol=1e-6)
        assert torch.allclose(cell(x[:, agent], h[:, agent], agent=agent), ours[:, agent], atol=1e-6)


def test_unroll_equals_stepping_with_resets():
    torch.manual_seed(0)
    torso = Torso(2, 3, [8], "tanh", rnn_hidden_size=6)
    x = torch.randn(5, 4, 2, 3)  # [L, S, N, D]
    starts = torch.rand(5, 4) < 0.3
    memory0 = torch.randn(4, 2, 6)
    memory, stepped = memory0, []
    for t in range(5):
        out, memory = torso(x[t], memory, starts[t])
        stepped.append(out)
    assert torch.allclose(torso.unroll(x, memory0, starts), torch.stack(stepped), atol=1e-6)
    # A start clears the memory: the output no longer depends on what came before.
    first = torch.ones(4, dtype=torch.bool)
    assert torch.allclose(torso(x[0], memory0, first)[0], torso(x[0], torch.zeros_like(memory0), first)[0])


def test_sequences_cut_time_into_chunks():
    storage = RolloutStorage(6)
    for t in range(6):
        storage.insert(t, x=torch.tensor([10 * t, 10 * t + 1]))  # [B=2]
    chunks = storage.sequences(["x"], chunk_length=3)["x"]  # [L=3, S=2 chunks x 2 copies]
    assert chunks.tolist() == [[0, 1, 30, 31], [10, 11, 40, 41], [20, 21, 50, 51]]
    assert storage.sequences(["x"], chunk_length=1)["x"].tolist() == [[0, 1, 10, 11, 20, 21, 30, 31, 40, 41, 50, 51]]


def test_value_normalizer_standardizes_and_inverts():
    norm = ValueNormalizer(beta=0.9)
    targets = torch.randn(1000) * 5 + 3
    for _ in range(200):
        norm.update(targets)
    z = norm.normalize(targets)
    assert abs(z.mean().item()) < 0.05 and abs(z.std().item() - 1) < 0.05
    assert torch.allclose(norm.denormalize(z), targets, atol=1e-4)
    assert torch.equal(ValueNormalizer(enabled=False).normalize(targets), targets)


def test_conjugate_gradient_solves_spd_system():
    torch.manual_seed(0)
    m = torch.randn(6, 6, dtype=torch.float64)
    a = m @ m.T + 6 * torch.eye(6, dtype=torch.float64)
    b = torch.randn(6, dtype=torch.float64)
    assert torch.allclose(conjugate_gradient(lambda v: a @ v, b, iterations=20), torch.linalg.solve(a, b), atol=1e-8)


def test_config_errors_name_the_fix():
    with pytest.raises(ValidationError, match="multiple of chunk_length"):
        OnPolicyConfig(recurrent=True, rollout_length=64, chunk_length=10)
    with pytest.raises(ValidationError, match="share_parameters must be false"):
        SequentialUpdateConfig(share_parameters=True)


def test_learning_rate_annealing_is_linear_over_the_budget():
    env = make("matrix/acpo-3x3", n_envs=2, seed=0)
    agent = MAPPO(env.spec, OnPolicyConfig(n_envs=2, rollout_length=5, ppo_epochs=1, lr_annealing=True), CPU)
    timestep = env.reset()
    with pytest.raises(RuntimeError, match="set_budget"):
        agent.train_iteration(env, timestep)
    agent.schedule.env_steps_done = 0
    agent.set_budget(40)
    lrs = []
    for _ in range(4):
        timestep = agent.train_iteration(env, timestep).timestep
        cfg = agent.config
        lrs.append([agent.actor.optimizer.lr / cfg.lr_actor, agent.critic.optimizer.lr / cfg.lr_critic])
    assert torch.tensor(lrs).flatten().tolist() == pytest.approx([1.0, 1.0, 0.75, 0.75, 0.5, 0.5, 0.25, 0.25])


# --- the members' update rules --------------------------------------------------------------------
class OneAgentBandit(BatchedEnv):
    """One agent, one step, 3 actions with rewards 0, 1, 2 (a one-agent team)."""

    Params = BaseModel

    def __init__(self, n_envs, seed, device="cpu"):
        super().__init__(n_envs, seed, device)
        self.spec = EnvSpec("test/bandit", "test", n_agents=1, obs_dim=2, state_dim=2, n_actions=3, episode_limit=1)
        self.tracker = EpisodeTracker(n_envs, self.device)

    def reset(self):
        return self.first_timestep(torch.ones(self.n_envs, 1, 2), torch.ones(self.n_envs, 2))

    def step(self, actions):
        reward = actions.float()
        done = torch.ones(self.n_envs, dtype=torch.bool)
        ret, length = self.tracker.update(reward[:, 0], done)
        obs, state = torch.ones(self.n_envs, 1, 2), torch.ones(self.n_envs, 2)
        return TimeStep(obs, state, None, reward, done, ~done, obs, state, ret, length)


class Clock(BatchedEnv):
    """One agent whose observation and state are the time t; copy b's episodes are truncated after 2 + b steps
    (never terminated); reward 1 per step."""

    Params = BaseModel

    def __init__(self, n_envs, seed, device="cpu"):
        super().__init__(n_envs, seed, device)
        self.spec = EnvSpec("test/clock", "test", n_agents=1, obs_dim=1, state_dim=1, n_actions=2, episode_limit=3)
        self.tracker = EpisodeTracker(n_envs, self.device)
        self.t = torch.zeros(n_envs)
        self.limit = 2.0 + torch.arange(n_envs)

    def _view(self, t):
        return t.view(-1, 1, 1).clone(), t.view(-1, 1).clone()

    def reset(self):
        self.t.zero_()
        return self.first_timestep(*self._view(self.t))

    def step(self, actions):
        self.t += 1
        truncated = self.t >= self.limit
        final_obs, final_state = self._view(self.t)
        reward = torch.ones(self.n_envs, 1)
        ret, length = self.tracker.update(reward[:, 0], truncated)
        self.t[truncated] = 0
        obs, state = self._view(self.t)
        return TimeStep(obs, state, None, reward, torch.zeros_like(truncated), truncated, final_obs, final_state,
                        ret, length)


def test_a_truncated_episode_bootstraps_from_its_final_state_and_the_rollout_from_the_next():
    """next_values[t] is V of the state step t leads to: V(final state) where the episode was cut short (not
    V of the next episode's first state), V(s_{t+1}) otherwise, V(s_T) after the last step (MAPPO's critic)."""
    env = Clock(2, seed=0)
    seed_everything(0)
    agent = MAPPO(env.spec, OnPolicyConfig(n_envs=2, rollout_length=5, hidden_sizes=[8]), CPU)
    storage, timestep, finished, _ = agent.collect(env, env.reset())
    storage.fields = {k: v[:, 0] for k, v in storage.fields.items()}  # seed batch of one: [T, K=1, B, ...]
    finished = [f[0][~f[0].isnan()] for f in finished]
    with torch.no_grad():
        v = lambda t: agent.critic.net.step(torch.tensor([[[[float(t)]]]]), torch.zeros(1, 1, 1, 0),  # noqa: E731
                                            torch.zeros(1, 1, dtype=torch.bool))[0].item()
    times = [[0, 1, 0, 1, 0], [0, 1, 2, 0, 1]]  # the state each step was taken in, per copy
    for b in range(2):
        for t in range(5):
            after = times[b][t] + 1  # the clock after step t, before any reset
            truncated = after == 2 + b
            assert bool(storage["episode_end"][t, b]) == truncated
            assert storage["values"][t, b, 0].item() == pytest.approx(v(times[b][t]))
            assert storage["next_values"][t, b, 0].item() == pytest.approx(v(after)), (b, t)
    assert timestep.state[:, 0].tolist() == [1.0, 2.0]
    assert torch.cat(finished).tolist() == [2.0, 3.0, 2.0]  # in the order they ended: copy 0, copy 1, copy 0


@pytest.mark.parametrize("n_seeds", [None, 1])  # the unbatched layout, and a solo run's (a seed batch of one)
def test_happo_with_one_agent_is_ppo(n_seeds):
    """HAPPO's sequential update (M = 1 for the only agent, its own Adam rows) is PPO's joint update."""
    env = OneAgentBandit(8, seed=0)
    settings = dict(n_envs=8, rollout_length=4, ppo_epochs=3, num_minibatches=1, agent_id_input=False)
    seed_everything(0)
    mappo = MAPPO(env.spec, OnPolicyConfig(**settings), CPU, n_seeds=n_seeds)
    seed_everything(0)
    happo = HAPPO(env.spec, SequentialUpdateConfig(**settings), CPU, n_seeds=n_seeds)
    happo.actor.net.load_state_dict(mappo.actor.net.state_dict())
    storage = mappo.collector.collect(env, env.reset()).storage
    advantages, returns = rollout_gae(storage, 0.99, 0.95)
    batch = update_batch(storage, standardize(advantages, n_seeds), returns, mappo.config, n_seeds is not None)
    before = {k: v.clone() for k, v in mappo.actor.net.state_dict().items()}
    ppo_update(mappo.actor, {k: v.clone() for k, v in batch.items()}, mappo.config)
    sequential_update(happo.actor, batch, happo.update_agent)
    for name, value in mappo.actor.net.state_dict().items():
        assert not torch.equal(value, before[name]) or name.endswith("bias")
        assert torch.allclose(happo.actor.net.state_dict()[name], value, atol=1e-6), name


def _collected(cls, config, env_name="matrix/acpo-3x3", n_envs=16, seed=0, n_seeds=1):
    seed_everything(seed)
    env = make(env_name, n_envs=n_envs, seed=seed)
    agent = cls(env.spec, config, CPU, n_seeds=n_seeds)
    return agent, env, agent.collector.collect(env, env.reset()).storage


def _actor_batch(agent, storage):
    advantages, _ = rollout_gae(storage, agent.config.gamma, agent.config.gae_lambda)
    storage.fields["advantages"] = standardize(advantages, agent.n_seeds)
    batch = storage.sequences(["actor_in", "avail", "actions", "log_probs", "advantages", "starts"], 1,
                              seeded=agent.n_seeds is not None)
    batch["factor"] = torch.ones_like(batch["log_probs"].select(-1, 0))
    return batch


@pytest.mark.parametrize("n_seeds", [None, 1])  # the unbatched layout, and a solo run's (a seed batch of one)
@pytest.mark.parametrize("env_name", ["matrix/acpo-3x3", "differential/cora-2agent"])
def test_hatrpo_accepted_step_satisfies_its_kl_bound(env_name, n_seeds):
    config = HATRPOConfig(n_envs=16, rollout_length=8, kl_threshold=0.005)
    agent, env, storage = _collected(HATRPO, config, env_name, n_seeds=n_seeds)
    batch = _actor_batch(agent, storage)
    with torch.no_grad():
        old = [agent.actor.sequence_params(batch, i) for i in range(env.spec.n_agents)]
    for i in range(env.spec.n_agents):
        before = [p.detach().clone() for p in agent.actor.net.parameters()]
        stats = {key: value.item() for key, value in agent.update_agent(batch, i).items()}  # one seed
        assert stats["accepted"] == 1.0  # a fresh policy and informative advantages: the step is taken
        with torch.no_grad():
            kl = agent.actor.net.head.kl(old[i], agent.actor.sequence_params(batch, i)).mean().item()
        assert 0 < kl <= config.kl_threshold + 1e-7
        assert kl == pytest.approx(stats["kl"], rel=1e-4)
        assert stats["improvement"] > 0
        for p, b in zip(agent.actor.net.parameters(), before, strict=True):  # only agent i's parameters moved
            others = [j for j in range(env.spec.n_agents) if j != i]
            assert torch.equal(p[others], b[others])


def test_optimistic_mappo_scales_negative_advantages():
    advantages = torch.tensor([-2.0, -0.5, 0.0, 1.5])
    clipped = optimistic(advantages, OptimisticMAPPOConfig().optimism_slope)  # default eta = 0: clipped at zero
    assert clipped.tolist() == [0.0, 0.0, 0.0, 1.5]
    assert optimistic(advantages, 0.1).tolist() == pytest.approx([-0.2, -0.05, 0.0, 1.5])
    # eta = 0 on the 3x3 game: never pushed away from (C, C)'s miscoordinated -20s, the actors learn from the
    # positive advantages only, and the update differs from MAPPO's on the same rollout
    agents = []
    for cls, config in ((MAPPO, OnPolicyConfig(n_envs=4)), (OptimisticMAPPO, OptimisticMAPPOConfig(n_envs=4))):
        env = make("matrix/acpo-3x3", n_envs=4, seed=0)
        seed_everything(0)
        agent = cls(env.spec, config, CPU)
        seed_everything(1)
        agent.train_iteration(env, env.reset())
        agents.append(agent)
    critics = [list(a.critic.net.parameters()) for a in agents]
    assert all(torch.equal(x, y) for x, y in zip(*critics, strict=True))  # V learns the unshaped targets
    actors = [list(a.actor.net.parameters()) for a in agents]
    assert not all(torch.equal(x, y) for x, y in zip(*actors, strict=True))


def test_centralized_ppo_decodes_joint_actions_and_masks():
    env = make("matrix/acpo-3x3", n_envs=2, seed=0)
    agent = CentralizedPPO(env.spec, CentralizedPPOConfig(n_envs=2), CPU)
    assert agent.joint.table.tolist() == [[a, b] for a in range(3) for b in range(3)]
    avail = torch.tensor([[[True, False, True], [False, True, True]]])
    joint = agent.joint.avail(avail)[0, 0]
    assert joint.nonzero().squeeze(-1).tolist() == [1, 2, 7, 8]  # (A,B) (A,C) (C,B) (C,C)
    with pytest.raises(CoopbenchError, match="joint actions"):
        CentralizedPPO(make("gridworld/as-coop-predation-20", n_envs=1, seed=0, n_agents=20).spec,
                       CentralizedPPOConfig(), CPU)
    with pytest.raises(CoopbenchError, match="discrete"):
        CentralizedPPO(make("differential/cora-2agent", n_envs=1, seed=0).spec, CentralizedPPOConfig(), CPU)


def test_ippo_private_learns_from_own_rewards():
    config = resolve("ippo_private", "gridworld/as-coop-predation-2")
    assert config.algo_hparams["learning_reward"] == "own" and not config.algo_hparams["share_parameters"]
    env = make("gridworld/as-coop-predation-2", n_envs=2, seed=0)
    agent = make_agent("ippo_private", env, config.algo_hparams)
    reward = torch.tensor([[-4.0, 0.0]])
    assert torch.equal(agent.collector.rewards(reward), reward)
    team = make_agent("centralized_ppo", env, resolve("centralized_ppo", "gridworld/as-coop-predation-2").algo_hparams)
    assert team.collector.rewards(reward).tolist() == [[-4.0]]
    mappo = make_agent("mappo", env, resolve("mappo", "gridworld/as-coop-predation-2").algo_hparams)
    assert mappo.collector.rewards(reward).tolist() == [[-4.0, -4.0]]  # the team return, for every agent


def make_agent(algo, env, hparams):
    from algorithms.registry import ALGORITHMS

    cls = ALGORITHMS.get(algo).load()
    return cls(env.spec, cls.Config(**hparams), CPU)


# --- behaviour ------------------------------------------------------------------------------------
def _train(algo, env_name, iterations, seed=0, init=None, **hparams):
    seed_everything(seed)
    config = resolve(algo, env_name)
    env = make(env_name, n_envs=config.algo_hparams["n_envs"], seed=seed)
    agent = make_agent(algo, env, {**config.algo_hparams, **hparams})
    if init is not None:
        init(agent)
    timestep = env.reset()
    for _ in range(iterations):
        timestep = agent.train_iteration(env, timestep).timestep
    return agent, timestep


def start_at_a_with_0_6(agent):
    """ACPO Table 1's initialization: pi(A) = 0.6, pi(B) = pi(C) = 0.2 for both agents."""
    with torch.no_grad():
        agent.actor.net.head.linear.weight.zero_()
        agent.actor.net.head.linear.bias.copy_(torch.log(torch.tensor([0.6, 0.2, 0.2])))


@pytest.mark.parametrize("algo", ["mappo", "happo"])
def test_from_pi_a_0_6_mappo_and_happo_converge_to_a_a(algo):
    """ACPO Table 1: simultaneous (MAPPO) and iterative best-response (HAPPO) updates stay at the NE (A, A)."""
    agent, timestep = _train(algo, "matrix/acpo-3x3", iterations=30, init=start_at_a_with_0_6)
    probs = policy_probs(agent, timestep)[0]  # [agents, actions]
    assert probs[:, 0].min() > 0.95, probs


def test_centralized_ppo_finds_the_optimum_of_the_3x3_game():
    """A joint-action learner is not trapped at (A, A): it reaches (C, C) (reward 20) from the same start."""
    agent, timestep = _train("centralized_ppo", "matrix/acpo-3x3", iterations=30)
    probs = policy_probs(agent, timestep)[0, 0]  # [9 joint actions]
    assert probs[8] > 0.95, probs


class CueGame(BatchedEnv):
    """A memory task: a cue (+1 or -1) is shown only at the first of 4 steps; at the last step every
    agent earns 1 for the action matching the cue. Without memory the best is 0.5 per agent."""

    Params = BaseModel
    LENGTH = 4

    def __init__(self, n_envs, seed, device="cpu"):
        super().__init__(n_envs, seed, device)
        self.spec = EnvSpec("test/cue", "test", n_agents=2, obs_dim=2, state_dim=2, n_actions=2,
                            episode_limit=self.LENGTH, return_bounds=(0.0, 1.0))
        self.tracker = EpisodeTracker(n_envs, self.device)
        self.t = torch.zeros(n_envs, dtype=torch.long)
        self.cue = torch.zeros(n_envs, dtype=torch.long)

    def _observe(self):
        shown = torch.where(self.t == 0, 2.0 * self.cue - 1.0, torch.zeros(self.n_envs))
        step = self.t.float() / self.LENGTH
        obs = torch.stack([shown, step], -1).unsqueeze(1).expand(-1, 2, -1).contiguous()
        return obs, obs[:, 0]

    def _draw(self, which):
        self.cue[which] = torch.randint(0, 2, (int(which.sum()),), generator=self.generator)
        self.t[which] = 0

    def reset(self):
        self._draw(torch.ones(self.n_envs, dtype=torch.bool))
        return self.first_timestep(*self._observe())

    def step(self, actions):
        last = self.t == self.LENGTH - 1
        reward = ((actions == self.cue.unsqueeze(1)) & last.unsqueeze(1)).float()
        self.t += 1
        final_obs, final_state = self._observe()
        ret, length = self.tracker.update(reward.mean(-1), last)
        self._draw(last)
        obs, state = self._observe()
        return TimeStep(obs, state, None, reward, last, torch.zeros_like(last), final_obs, final_state, ret, length)


@pytest.mark.slow
def test_recurrent_mappo_solves_a_memory_task_feed_forward_cannot():
    def train(recurrent: bool) -> float:
        seed_everything(0)
        env = CueGame(32, seed=0)
        config = OnPolicyConfig(n_envs=32, rollout_length=40, ppo_epochs=4, num_minibatches=2, lr_actor=3e-3,
                                lr_critic=3e-3, recurrent=recurrent, rnn_hidden_size=32, chunk_length=8,
                                hidden_sizes=[32], entropy_coef=0.0)
        agent = MAPPO(env.spec, config, CPU)
        timestep = env.reset()
        returns = []
        for _ in range(60):
            result = agent.train_iteration(env, timestep)
            timestep = result.timestep
            returns.append(result.episode_returns.mean().item())
        return sum(returns[-5:]) / 5

    assert train(recurrent=True) > 0.95
    assert train(recurrent=False) < 0.65


def test_a_shared_id_free_mappo_critic_computes_one_value_per_state_with_the_same_result():
    config = OnPolicyConfig(n_envs=4, rollout_length=6, ppo_epochs=2, agent_id_input=False)
    agents, critic_rows = [], []
    params = resolve("mappo", "differential/cora-5agent").env_params  # 5 agents (make() alone: the default 2)
    for joint in (True, False):
        env = make("differential/cora-5agent", n_envs=4, seed=0, **params)
        seed_everything(0)
        agent = MAPPO(env.spec, config, CPU)
        if not joint:  # the N identical rows the joint critic avoids
            agent.critic.width = env.spec.n_agents
            agent.collector.critic_memory = agent.collector.critic_memory.expand(-1, -1, env.spec.n_agents, -1)
        seed_everything(1)
        timestep = env.reset()
        critic_rows.append(agent.critic_input(timestep.obs, timestep.state, None).shape[-2])
        agent.train_iteration(env, timestep)
        agents.append(agent)
    assert critic_rows == [1, 5]
    for a, b in zip(agents[0].critic.net.parameters(), agents[1].critic.net.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    for a, b in zip(agents[0].actor.net.parameters(), agents[1].actor.net.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)
