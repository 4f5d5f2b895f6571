"""CORA-PPO (algorithms/cora.py): coalition values (eq. 4, eq. 5, the quadratic critic of 6.1) against
hand-computed and enumerated values, credits in the strong epsilon-core that sum to A_N, behaviour on a
small game, and every variant through the run driver.

CORA's tensors carry a seed dimension (docs/architecture.md, "Seed batches"); these tests build one seed, so
inputs get a leading dimension of 1 (`[None]`) and per-seed statistics are lists of one value
(tests/test_seed_batch.py checks batches of several seeds against their solo runs)."""

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.optimize import linprog

from algorithms.blocks.gae import rollout_gae
from algorithms.cora import CORA, CORAConfig, MLPQCritic, QuadraticQCritic, per_seed
from algorithms.core_qp import all_proper_coalitions, sample_coalitions, solve_core_allocation
from algorithms.registry import ALGORITHMS
from coopbench.base.errors import CoopbenchError
from coopbench.base.io import read_json, read_parquet
from coopbench.config import parse_set, resolve
from coopbench.run import execute, seed_everything
from environments import make
from tests.policy_probs import policy_probs

CPU = torch.device("cpu")
VARIANTS = ["cora", "cora_no_std", "cora_qc", "cora_m10", "cora_m15", "cora_m20", "cora_m25"]
PAYOFFS = torch.tensor([[5.0, -20.0, -20.0], [-20.0, 10.0, -20.0], [-20.0, -20.0, 20.0]])  # ACPO Table 1


def agent_for(algo, env_name, n_envs=4, seed=0, **hparams):
    config = resolve(algo, env_name)
    seed_everything(seed)
    env = make(env_name, n_envs=n_envs, seed=seed, **config.env_params)
    cls = ALGORITHMS.get(algo).load()
    return cls(env.spec, cls.Config(**{**config.algo_hparams, "n_envs": n_envs, **hparams}), CPU), env


def table_critic_agent(**hparams) -> CORA:
    """CORA on the 3x3 game with its MLP Q critic set by hand to Q(s, a) = PAYOFFS[a_1, a_2].

    Hidden unit k = (k_1, k_2) of the first layer is relu(1[a_1 = k_1] + 1[a_2 = k_2] - 1) = 1[a = k]; the
    second layer passes it on; the output weights are the payoffs.
    """
    env = make("matrix/acpo-3x3", n_envs=2, seed=0)
    agent = CORA(env.spec, CORAConfig(n_envs=2, hidden_sizes=[9, 9], **hparams), CPU)
    q = agent.q_critic
    with torch.no_grad():
        for p in q.parameters():
            p.zero_()
        first = q.layers[0].weight[0]  # [state (1) + 2 agents x 3 actions, 9]
        for k1, k2 in itertools.product(range(3), range(3)):
            first[1 + k1, 3 * k1 + k2] = 1.0
            first[1 + 3 + k2, 3 * k1 + k2] = 1.0
        q.layers[0].bias.fill_(-1.0)
        q.layers[1].weight[0].copy_(torch.eye(9))
        q.out.weight[0, :, 0] = PAYOFFS.flatten()
    return agent


def all_joint_actions(n_agents, n_actions):
    return torch.tensor(list(itertools.product(range(n_actions), repeat=n_agents)))


POLICIES = torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3]])  # agent 1: argmax A; agent 2: argmax B
V = -3.0


def _coalition_advantages(agent, actions, policies=POLICIES):
    """A_C `[B, m]` of one seed (inputs `[1, B, ...]`)."""
    batch = actions.shape[0]
    params = policies.log().expand(1, batch, -1, -1)
    state = torch.ones(1, batch, agent.spec.state_dim)
    return agent.coalition_advantages(state, actions[None], params, torch.full((1, batch), V), agent.coalitions)[0]


# --- coalition values ----------------------------------------------------------------------------------
def test_the_hand_set_critic_is_the_payoff_table():
    agent = table_critic_agent()
    actions = all_joint_actions(2, 3)
    q = agent.q_critic(torch.ones(1, 9, 1), agent.action_inputs(actions)[None])[0]
    assert torch.allclose(q, PAYOFFS.flatten())
    assert agent.coalitions.tolist() == [[True, False], [False, True]]  # {agent 1}, {agent 2}


def test_eq5_coalition_advantages_use_the_most_probable_action_of_the_others():
    agent = table_critic_agent(coalition_value="baseline")
    actions = all_joint_actions(2, 3)
    adv = _coalition_advantages(agent, actions)
    # abar = (A, B): A_{1}(a) = R[a_1, B] - V, A_{2}(a) = R[A, a_2] - V (CORA eq. 5)
    expected = torch.stack([PAYOFFS[actions[:, 0], 1], PAYOFFS[0, actions[:, 1]]], -1) - V
    assert torch.allclose(adv, expected)


def test_eq4_coalition_advantages_average_over_the_others_policies_and_mc_converges():
    actions = all_joint_actions(2, 3)
    # A_{1}(a) = sum_b pi_2(b) R[a_1, b] - V, A_{2}(a) = sum_b pi_1(b) R[b, a_2] - V (CORA eq. 4)
    exact = torch.stack([(PAYOFFS @ POLICIES[1])[actions[:, 0]], (POLICIES[0] @ PAYOFFS)[actions[:, 1]]], -1) - V
    errors = []
    for k in (4, 64, 4096):
        torch.manual_seed(0)  # the draws come from the agent's random stream, seeded from the global RNG when built
        agent = table_critic_agent(coalition_value="expected", mc_samples=k)
        errors.append((_coalition_advantages(agent, actions) - exact).abs().mean().item())
    # Monte Carlo error ~ 1/sqrt(K): payoff std ~ 12 gives ~6 at K = 4, ~0.2 at K = 4096
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 0.5 and errors[0] > 4 * errors[2], errors


def test_continuous_baseline_is_the_gaussian_mean_and_expectation_clips_like_the_environment():
    env = make("differential/cora-2agent", n_envs=1, seed=0)
    agent = CORA(env.spec, CORAConfig(n_envs=1), CPU)
    mean = torch.tensor([[0.0, 4.5], [-6.0, 2.0]])  # [B=2, n=2]: one near the bound, one outside the box
    log_std = torch.tensor([[0.0, 0.5], [0.3, -1.0]])
    params = torch.stack([mean, log_std], -1)  # GaussianHead params: cat(mean, log_std), action_dim 1
    assert torch.allclose(agent.baseline_action_inputs(params)[..., 0], mean.clamp(-5, 5) / 5)
    torch.manual_seed(0)
    draws = mean + log_std.exp() * torch.randn(200_000, *mean.shape)
    empirical = (draws.clamp(-5, 5) / 5).mean(0)
    assert torch.allclose(agent.expected_action_inputs(params)[..., 0], empirical, atol=3e-3)


def _random_state_actions_params(spec, batch, generator):
    n, a = spec.n_agents, spec.n_actions
    state = torch.randn(batch, spec.state_dim, generator=generator)
    actions = torch.randint(0, a, (batch, n), generator=generator)
    params = torch.log_softmax(2 * torch.randn(batch, n, a, generator=generator), -1)
    return state, actions, params


def test_mlp_critic_coalition_values_equal_explicit_joint_inputs():
    """The first-layer split (one matmul of the masks with per-agent parts) is Q on the substituted joint action."""
    torch.manual_seed(0)
    critic = MLPQCritic(state_dim=4, n_agents=3, width=5, hidden_sizes=[16, 8], activation="tanh")
    g = torch.Generator().manual_seed(1)
    state, x = torch.randn(6, 4, generator=g), torch.randn(6, 3, 5, generator=g)
    others, sampled = torch.randn(6, 3, 5, generator=g), torch.randn(6, 7, 3, 5, generator=g)
    q = lambda s, a: critic(s[None], a[None])[0]  # noqa: E731 - one seed
    values = lambda o, members: critic.coalition_values(  # noqa: E731
        state[None], x[None], o[None], members if members.dim() == 2 else members[None])[0]
    for members in (all_proper_coalitions(3), sample_coalitions(3, 4, 6, generator=g)):
        mem = members if members.dim() == 3 else members.expand(6, -1, -1)
        joint = torch.where(mem[..., None], x[:, None], others[:, None])  # [B, m, n, w]
        explicit = q(state[:, None].expand(-1, mem.shape[1], -1).reshape(-1, 4), joint.flatten(0, 1))
        assert torch.allclose(values(others, members), explicit.view(6, -1), atol=1e-5)
        joint = torch.where(mem[:, None, :, :, None], x[:, None, None], sampled[:, :, None])  # [B, K, m, n, w]
        explicit = q(state[:, None, None].expand(-1, 7, mem.shape[1], -1).reshape(-1, 4), joint.flatten(0, 2))
        assert torch.allclose(values(sampled, members), explicit.view(6, 7, -1).mean(1), atol=1e-5)


def test_quadratic_critic_closed_form_equals_enumerated_expectation():
    """CORA 6.1: E_{a_{N\\C} ~ pi}[Q(s, a_C, a_{N\\C})] by substituting the probabilities (Q is multilinear)."""
    env = make("matrix/cora-mtg", n_envs=1, seed=0, n_actions=3)  # 3 agents, 3 actions
    agent = CORA(env.spec, CORAConfig(n_envs=1, q_critic="quadratic", coalition_value="expected"), CPU)
    assert isinstance(agent.q_critic, QuadraticQCritic)
    with torch.no_grad():  # pairwise terms of the same size as the rest
        agent.q_critic.head.weight.normal_(0, 0.5)
        agent.q_critic.head.bias.normal_(0, 1.0)
    g = torch.Generator().manual_seed(0)
    state, actions, params = _random_state_actions_params(env.spec, 5, g)
    values = torch.randn(5, generator=g)
    closed = agent.coalition_advantages(state[None], actions[None], params[None], values[None], agent.coalitions)[0]

    joint = all_joint_actions(3, 3)  # [27, 3]
    probs = params.exp()
    q_all = agent.q_critic(state.repeat_interleave(27, 0)[None], agent.action_inputs(joint.repeat(5, 1))[None])
    q_all = q_all.view(5, 27)
    for c, members in enumerate(agent.coalitions):
        for b in range(5):
            total = 0.0
            for k, a in enumerate(joint):
                if any(a[i] != actions[b, i] for i in range(3) if members[i]):
                    continue
                weight = math.prod(probs[b, j, a[j]].item() for j in range(3) if not members[j])
                total += weight * q_all[b, k].item()
            assert closed[b, c].item() == pytest.approx(total - values[b].item(), abs=1e-4)


# --- credits ------------------------------------------------------------------------------------------
def least_core_epsilon(coalition_adv, grand, members):
    """min eps s.t. sum A = A_N, sum_{i in C} A_i >= A_C - eps, eps >= 0 (scipy's LP, one sample)."""
    n = members.shape[-1]
    a_ub = np.hstack([-members.double().numpy(), -np.ones((members.shape[0], 1))])
    res = linprog(c=[0.0] * n + [1.0], A_ub=a_ub, b_ub=-coalition_adv.double().numpy(),
                  A_eq=[[1.0] * n + [0.0]], b_eq=[float(grand)], bounds=[(None, None)] * n + [(0, None)])
    assert res.status == 0
    return res.x[-1]


@pytest.mark.parametrize("algo", ["cora", "cora_no_std"])
def test_credits_sum_to_the_grand_advantage_and_lie_in_the_epsilon_core(algo):
    agent, env = agent_for(algo, "matrix/cora-mtg")
    for _ in range(2):  # a Q critic that has learned something
        agent.train_iteration(env, env.reset())
    storage = agent.collector.collect(env, env.reset()).storage
    credits, returns = agent.advantages(storage)  # what train_iteration normalizes and feeds to the actors
    grand, gae_returns = rollout_gae(storage, agent.config.gamma, agent.config.gae_lambda)
    assert credits.shape == grand.shape and torch.equal(returns, gae_returns)  # value targets stay GAE's
    assert torch.allclose(credits.sum(-1), grand[..., 0], atol=1e-4)  # CORA eq. 8: sum_i A_i = A_N
    assert not torch.allclose(credits, grand / 3, atol=1e-2)  # not the equal split
    # A_C again (eq. 5 is deterministic), then the core constraints with each sample's epsilon
    flat = lambda x: per_seed(x)[0]  # noqa: E731 - [T, K=1, B, ...] -> the seed's samples [T*B, ...]
    coalition_adv = agent.coalition_advantages(per_seed(storage["critic_in"][..., 0, :]), per_seed(storage["actions"]),
                                               per_seed(agent.stored_policy_params(storage)),
                                               per_seed(storage["values"][..., 0]), agent.coalitions)[0]
    covered = flat(credits) @ agent.coalitions.T.float()  # sum_{i in C} A_i, [T*B, 6]
    epsilon = (coalition_adv - covered).amax(-1).clamp_min(0)
    assert agent.cora_stats["core_epsilon"] == [pytest.approx(epsilon.mean().item(), rel=1e-3, abs=1e-4)]
    sampled = slice(0, None, 7)
    reference = torch.tensor([least_core_epsilon(coalition_adv[b], flat(grand[..., 0])[b], agent.coalitions)
                              for b in range(coalition_adv.shape[0])[sampled]])
    if algo == "cora_no_std":  # lambda = 0: the least core, epsilon as small as the LP's
        assert torch.allclose(epsilon[sampled].double(), reference, atol=1e-3)
        return
    # lambda > 0 trades epsilon for balance: epsilon >= the least core's, and a variance at most that of the
    # least core's minimum-variance allocation (lambda = 0), else the lambda = 0 point would have a lower objective
    assert (epsilon[sampled].double() >= reference - 1e-3).all()
    least = solve_core_allocation(coalition_adv, flat(grand[..., 0]), agent.coalitions, 0.0).credits
    spread = lambda c: (c - c.mean(-1, keepdim=True)).square().sum(-1)  # noqa: E731
    assert (spread(flat(credits)) <= spread(least) + 1e-3).all()
    assert (epsilon > least_epsilon(coalition_adv, least, agent.coalitions) + 1e-3).any()  # the trade-off binds


def least_epsilon(coalition_adv, credits, members):
    return (coalition_adv - credits @ members.T.float()).amax(-1).clamp_min(0)


def test_sampled_coalitions_are_drawn_per_sample_and_constrain_the_credits():
    agent, env = agent_for("cora_m10", "differential/cora-5agent")
    assert agent.coalitions is None
    seeded = agent.coalition_set(64)  # [K=1, 64, 10, 5]: drawn from the seed's stream
    assert seeded.shape == (1, 64, 10, 5)
    members = seeded[0]
    assert members.any(-1).all() and not members.all(-1).any()
    assert (members.unsqueeze(1) == members.unsqueeze(2)).all(-1).sum((1, 2)).eq(10).all()  # distinct per sample
    assert not (members == members[:1]).all()  # per sample, not one set for all
    g = torch.Generator().manual_seed(0)
    coalition_adv, grand = torch.randn(64, 10, generator=g), torch.randn(64, generator=g)
    credits = agent.allocate(coalition_adv[None], grand[None], seeded)[0]
    assert torch.allclose(credits.sum(-1), grand, atol=1e-5)
    covered = (credits.unsqueeze(1) * members).sum(-1)
    epsilon = (coalition_adv - covered).amax(-1).clamp_min(0)
    assert agent.cora_stats["core_epsilon"] == [pytest.approx(epsilon.mean().item(), rel=1e-4, abs=1e-6)]
    # m >= 2^n - 2: all coalitions (the m-variants on a 2-agent task)
    small, _ = agent_for("cora_m10", "differential/cora-2agent")
    assert small.coalitions.shape == (2, 2)


def test_a_coalition_keeps_its_credit_when_the_joint_action_fails():
    """The mechanism of CORA A.7: at abar = (A, A), the joint action (C, A) fails (A_N = -17 < 0), but agent 2's
    coalition action A is worth A_{2} = R[A, A] - V = 8. The core is empty (A_{1} + A_{2} > A_N); the least core
    (epsilon = 4) gives agent 2 a positive credit, 8 - 4, and agent 1, who left (A, A), the loss."""
    agent = table_critic_agent(variance_weight=0.0)
    actions = torch.tensor([[2, 0]])
    adv = _coalition_advantages(agent, actions, torch.tensor([[0.6, 0.2, 0.2], [0.6, 0.2, 0.2]]))
    grand = PAYOFFS[2, 0] - V  # -17
    credits = agent.allocate(adv[None], grand.view(1, 1), agent.coalitions)[0, 0]
    assert adv[0].tolist() == pytest.approx([-20 - V, 5 - V])
    assert credits.tolist() == pytest.approx([-21.0, 4.0], abs=1e-4)
    assert agent.cora_stats["core_epsilon"] == [pytest.approx(4.0, abs=1e-4)]
    assert credits[1] > 0 > grand


# --- the pieces around the update ------------------------------------------------------------------------
def test_recurrent_masked_policies_are_recomputed_from_the_stored_chunks():
    agent, env = agent_for("cora", "gridworld/as-exchange", n_envs=2, recurrent=True, rollout_length=8,
                           chunk_length=4, ppo_epochs=1)
    storage = agent.collector.collect(env, env.reset()).storage
    with torch.no_grad():
        params = agent.stored_policy_params(storage)  # [T, B, n, A]
    taken = params.gather(-1, storage["actions"].unsqueeze(-1)).squeeze(-1)
    assert torch.allclose(taken, storage["log_probs"], atol=1e-5)  # the policies that acted
    baseline = params.argmax(-1)
    assert storage["avail"].gather(-1, baseline.unsqueeze(-1)).all()  # abar is an available action
    losses = agent.train_iteration(env, env.reset()).losses
    assert {"q_loss", "core_epsilon", "value_loss", "policy_loss"} <= set(losses)
    assert all(math.isfinite(v) for v in losses.values())


def test_q_critic_learns_the_td_target_and_td0_is_an_option():
    agent, env = agent_for("cora", "matrix/cora-mtg", value_target="td0")
    storage = agent.collector.collect(env, env.reset()).storage
    _, returns = agent.advantages(storage)
    y = storage["rewards"][..., 0] + agent.config.gamma * (~storage["terminated"]) * storage["next_values"][..., 0]
    assert torch.allclose(storage["q_targets"], y)
    assert torch.allclose(returns, y.unsqueeze(-1).expand_as(returns))  # Alg. 1 line 22
    # Q fits a fixed batch's targets
    [first] = agent.update_q_critic(storage)["q_loss"]  # one seed's loss
    for _ in range(20):
        [last] = agent.update_q_critic(storage)["q_loss"]
    assert last < 0.2 * first


def test_checkpoint_carries_the_q_critic_and_its_optimizer(tmp_path):
    agent, env = agent_for("cora_qc", "matrix/cora-mtg")
    agent.train_iteration(env, env.reset())
    torch.save(agent.state_dict(), tmp_path / "c.pt")
    fresh, _ = agent_for("cora_qc", "matrix/cora-mtg", seed=5)
    fresh.load_state_dict(torch.load(tmp_path / "c.pt", weights_only=True))
    for a, b in zip(agent.q_critic.state_dict().values(), fresh.q_critic.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert fresh.q_optimizer.state_dict()["state"].keys() == agent.q_optimizer.state_dict()["state"].keys()
    assert len(agent.q_optimizer.state_dict()["state"]) > 0


def test_config_errors_name_the_key_and_the_fix():
    with pytest.raises(CoopbenchError, match="coalition_value"):
        resolve("cora", "matrix/cora-mtg", parse_set(["algo.coalition_value=shapley"]))
    with pytest.raises(CoopbenchError, match="q_critic"):
        resolve("cora_qc", "matrix/cora-mtg", parse_set(["algo.q_critic=cubic"]))
    with pytest.raises(CoopbenchError, match="variance_weight"):
        resolve("cora", "matrix/cora-mtg", parse_set(["algo.variance_weight=-1"]))
    config = resolve("cora", "gridworld/as-coop-predation-20")
    env = make("gridworld/as-coop-predation-20", n_envs=1, seed=0, **config.env_params)
    with pytest.raises(CoopbenchError, match="coalition_samples"):
        CORA(env.spec, CORAConfig(**config.algo_hparams), CPU)
    CORA(env.spec, CORAConfig(**{**config.algo_hparams, "coalition_samples": 32}), CPU)  # eq. 19 scales
    with pytest.raises(CoopbenchError, match="learning_reward"):
        CORA(env.spec, CORAConfig(**{**config.algo_hparams, "coalition_samples": 32, "learning_reward": "own"}), CPU)


def test_variant_configs():
    expected = {"cora": (1.0, None, "mlp", "baseline"), "cora_no_std": (0.0, None, "mlp", "baseline"),
                "cora_qc": (1.0, None, "quadratic", "expected"), "cora_m10": (1.0, 10, "mlp", "baseline"),
                "cora_m25": (1.0, 25, "mlp", "baseline")}
    for algo, values in expected.items():
        h = resolve(algo, "differential/cora-5agent").algo_hparams
        assert (h["variance_weight"], h["coalition_samples"], h["q_critic"], h["coalition_value"]) == values
        # CORA Table 1, Differential Games (via mappo.yaml) and Fig. 8's 10 epochs
        assert (h["lr_actor"], h["lr_critic"], h["clip_eps"], h["n_envs"], h["ppo_epochs"]) == (5e-5, 5e-4, 0.2, 4, 10)
    h = resolve("cora", "matrix/cora-mtg").algo_hparams
    assert (h["lr_actor"], h["lr_critic"], h["clip_eps"], h["n_envs"]) == (5e-4, 5e-3, 0.3, 4)  # Table 1, Matrix
    assert resolve("cora", "smax/3m").algo_hparams["recurrent"]


# --- behaviour ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("algo", ["cora", "cora_no_std", "cora_qc"])
def test_reaches_the_optimum_of_the_3x3_game(algo):
    """From the default (near-uniform) initialization, CORA-PPO ends at the optimal joint action (C, C)."""
    config = resolve(algo, "matrix/acpo-3x3")
    seed_everything(0)
    env = make("matrix/acpo-3x3", n_envs=config.algo_hparams["n_envs"], seed=0)
    agent = CORA(env.spec, CORAConfig(**config.algo_hparams), CPU)
    timestep = env.reset()
    for _ in range(30):
        timestep = agent.train_iteration(env, timestep).timestep
    probs = policy_probs(agent, timestep)[0]  # [agents, actions]
    assert probs[:, 2].min() > 0.95, probs


# --- the run driver -----------------------------------------------------------------------------------
TINY = ["algo.n_envs=2", "algo.rollout_length=10", "algo.ppo_epochs=1", "run.total_env_steps=40",
        "run.eval_interval=20", "run.eval_episodes=2"]


@pytest.mark.parametrize("algo", VARIANTS)
@pytest.mark.parametrize("env_name", ["matrix/cora-mtg", "differential/cora-2agent"])
def test_every_variant_runs_through_the_run_driver(algo, env_name, tmp_path):
    run_dir = execute(resolve(algo, env_name, parse_set(TINY)), seed=0, results_dir=tmp_path)
    metrics = read_parquet(run_dir / "metrics.parquet")
    assert metrics["env_steps"].tolist() == [0, 20, 40]
    assert all(math.isfinite(v) for v in metrics["eval_return_mean"])
    assert read_json(run_dir / "manifest.json")["algo"] == algo


@pytest.mark.parametrize("algo", ["cora", "cora_qc", "cora_m10"])
def test_runs_on_vmas_navigation(algo, tmp_path):
    pytest.importorskip("vmas")
    run_dir = execute(resolve(algo, "vmas/navigation", parse_set(TINY)), seed=0, results_dir=tmp_path)
    assert all(math.isfinite(v) for v in read_parquet(run_dir / "metrics.parquet")["eval_return_mean"])


@pytest.mark.slow
def test_runs_on_smax_with_recurrent_policies(tmp_path):
    pytest.importorskip("jaxmarl")
    run_dir = execute(resolve("cora", "smax/3m", parse_set([*TINY, "algo.chunk_length=5"])), seed=0,
                      results_dir=tmp_path)
    assert all(math.isfinite(v) for v in read_parquet(run_dir / "metrics.parquet")["eval_return_mean"])
