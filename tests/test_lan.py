"""LAN, LAN-mean, IQL without fog and VAST (issue 14), and LAN Tables 1 and 3 (the lan-parameter-counts analysis):
eq. 3's target by hand, eq. 6's zero mean, the state fed to IQL without fog, LAN learning a coordination game's
optimum, bitwise resume, and the published parameter counts."""

import pytest
import torch
import yaml

from algorithms.lan import LAN, CentralValue, LANConfig, lan_targets, local_advantages
from algorithms.registry import ALGORITHMS
from algorithms.vast import epsilon_greedy_expectation, subteam_values
from coopbench.claims import claims_dir
from coopbench.config import load_algo_file, load_env_file
from coopbench.run import Progress, load_checkpoint, save_checkpoint, seed_everything
from environments.base import EnvSpec
from environments.registry import make
from leaderboard.analyses import lan_parameter_counts, smac_sizes
from tests.value_based_games import CountingGame, greedy_return

ACPO_3X3 = "matrix/acpo-3x3"


def test_eq3_target_against_a_hand_computed_case():
    """y_a = r + gamma [V_t(s') + A_t,a(tau_a', argmax_u A_a(tau_a', u))]: the online advantages choose among the
    available actions, the target ones value the choice; a terminated transition keeps r alone."""
    reward = torch.tensor([[1.0, 2.0]])  # [S=1, L=2]
    terminated = torch.tensor([[False, True]])
    filled = torch.tensor([[True, True]])
    next_v = torch.tensor([[10.0, 50.0]])  # V_t at the step each transition leads to
    # agent 0 at t=0: online argmax over available {0, 1} is 1 (action 2, larger, is unavailable)
    # agent 1 at t=0: online argmax is 2; the target network's own argmax (0) must not be used
    online = torch.tensor([[[[0.0, 1.0, 9.0], [0.0, 0.5, 3.0]], [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]]])
    target = torch.tensor([[[[4.0, -2.0, 7.0], [6.0, 1.0, -3.0]], [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]]])
    avail = torch.tensor([[[[True, True, False], [True, True, True]], [[True, True, True], [True, True, True]]]])
    y = lan_targets(reward, terminated, filled, next_v, target, online, avail, gamma=0.5)
    expected = torch.tensor([[[1.0 + 0.5 * (10.0 - 2.0), 1.0 + 0.5 * (10.0 - 3.0)], [2.0, 2.0]]])
    assert torch.equal(y, expected)
    # without double Q the target network's own (available) max is taken: 4 for agent 0, 6 for agent 1
    y_single = lan_targets(reward, terminated, filled, next_v, target, online, avail, gamma=0.5, double_q=False)
    assert torch.equal(y_single[0, 0], torch.tensor([1.0 + 0.5 * 14.0, 1.0 + 0.5 * 16.0]))


def test_central_value_sums_agents_and_reads_the_state():
    torch.manual_seed(0)
    value = CentralValue(n_agents=3, obs_dim=4, n_actions=2, hidden_size=5, state_dim=6, embed_size=8,
                         hidden_sizes=[8, 8])
    hidden, obs = torch.randn(7, 3, 5), torch.randn(7, 3, 4)
    last, state = torch.nn.functional.one_hot(torch.randint(0, 2, (7, 3)), 2).float(), torch.randn(7, 6)
    v = value(hidden, obs, last, state)
    assert v.shape == (7,)
    assert not torch.allclose(v, value(hidden, obs, last, state.flip(0)))  # the state matters
    # each agent's h~_a carries its id: swapping two agents' inputs changes V only through the ids
    swapped = value(hidden[:, [1, 0, 2]], obs[:, [1, 0, 2]], last[:, [1, 0, 2]], state)
    assert not torch.allclose(v, swapped)
    # the size does not depend on the agents beyond the id's width (LAN Table 1's caption)
    size = lambda n: sum(p.numel() for p in CentralValue(n, 4, 2, 5, 6, 8, [8, 8]).parameters())  # noqa: E731
    assert size(10) - size(3) == 7 * 8


def lan_on_counting(zero_mean: bool) -> LAN:
    env = CountingGame(2, seed=0)
    return LAN(env.spec, LANConfig(n_envs=2, zero_mean_advantages=zero_mean, hidden_sizes=[8], rnn_hidden_size=8),
               torch.device("cpu"))


def test_lan_mean_advantages_have_zero_mean_over_actions_and_lan_s_do_not():
    seed_everything(0)
    output = lan_on_counting(True).learner.agents.unroll(torch.randn(4, 3, 2, 2), torch.randint(0, 3, (4, 3, 2)))[0]
    mean_adv = local_advantages(output, zero_mean=True)
    assert mean_adv.mean(-1).abs().max() < 1e-6
    assert local_advantages(output, zero_mean=False).mean(-1).abs().max() > 1e-3  # LAN: unconstrained
    assert torch.equal(mean_adv.argmax(-1), output.argmax(-1))  # eq. 6 keeps the greedy policy
    # and the registered variant turns it on, LAN does not
    assert load_algo_file("lan_mean").hparams["zero_mean_advantages"] is True
    assert load_algo_file("lan").hparams["zero_mean_advantages"] is False


def test_lan_mean_trains_on_the_shifted_advantages():
    """Same weights, same batch: the two losses differ, because eq. 6 moves every action's proxy."""
    seed_everything(0)
    lan, lan_mean = lan_on_counting(False), lan_on_counting(True)
    lan_mean.learner.load_state_dict(lan.learner.state_dict())
    env = CountingGame(2, seed=0)
    timestep = env.reset()
    lan.learner.collect(env, timestep)
    batch = lan.learner.buffer.sample(2)
    assert lan.update(batch)["value_loss"] != pytest.approx(lan_mean.update(batch)["value_loss"])


class FogGame(CountingGame):
    """CountingGame with a state wider than the observation (5 vs 2 features)."""

    def __init__(self, n_envs, seed, device="cpu"):
        super().__init__(n_envs, seed, device)
        self.spec = EnvSpec(name="test/fog", family="test", n_agents=2, obs_dim=2, state_dim=5, n_actions=3,
                            episode_limit=self.LIMIT, has_action_mask=True)


def test_iql_without_fog_feeds_the_state_to_the_agents():
    cls = ALGORITHMS.get("iql_no_fog").load()
    hparams = {**load_algo_file("iql_no_fog").hparams, "hidden_sizes": [8], "rnn_hidden_size": 8}
    assert hparams["observe_state"] is True
    spec = FogGame(1, seed=0).spec
    torch.manual_seed(0)
    no_fog = cls(spec, cls.Config(**hparams), torch.device("cpu"))
    fog = cls(spec, cls.Config(**{**hparams, "observe_state": False}), torch.device("cpu"))
    # the agent network's input: state + last action + id (no fog) vs observation + last action + id
    first = lambda algo: next(algo.learner.agents.parameters())  # noqa: E731
    assert first(no_fog).shape[-2:] == (5 + 3 + 2, 8) and first(fog).shape[-2:] == (2 + 3 + 2, 8)
    obs, state = torch.randn(3, 4, 2, 2), torch.randn(3, 4, 5)
    actions = torch.randint(0, 3, (3, 4, 2))
    batch = {"obs": obs, "state": state, "actions": actions}
    q, _ = no_fog.learner.unroll(batch)
    assert torch.equal(q, no_fog.learner.unroll({**batch, "obs": torch.randn_like(obs)})[0])  # blind to obs
    assert not torch.allclose(q, no_fog.learner.unroll({**batch, "state": torch.randn_like(state)})[0])
    # acting reads the state too: every agent sees the same global state
    env = FogGame(1, seed=0)
    timestep = env.reset()
    assert torch.equal(no_fog.learner.agent_obs(timestep.obs, timestep.state)[0, 1], timestep.state[0])


def test_lan_learns_the_coordination_optimum_of_the_3x3_game():
    """ACPO's 3x3 game (diagonal 5, 10, 20, miscoordination -20; equilibria (A, A), (B, B), (C, C)): LAN's agents
    reach the optimum (C, C) = 20, the best response to uniform exploration (the one-step game's V is a
    shared bias, so this is the best-response learning of eq. 2), on both seeds."""
    for seed in (0, 1):
        seed_everything(seed)
        env = make(ACPO_3X3, n_envs=8, seed=seed, **load_env_file(ACPO_3X3).params)
        algorithm = LAN(env.spec, LANConfig(n_envs=8, recurrent=False, hidden_sizes=[32], buffer_episodes=500,
                                            batch_episodes=32, epsilon_start=1.0, epsilon_finish=1.0,
                                            target_update_interval=50, lr=1e-3), torch.device("cpu"))
        timestep = env.reset()
        for _ in range(200):
            timestep = algorithm.train_iteration(env, timestep).timestep
        assert greedy_return(algorithm, lambda n, seed: make(ACPO_3X3, n_envs=n, seed=seed)) == 20.0


def test_vast_subteam_values_partition_the_agents():
    torch.manual_seed(0)
    qs, subteams = torch.randn(5, 6, 8), torch.randint(0, 3, (5, 6, 8))
    values = subteam_values(qs, subteams, 3)
    assert values.shape == (5, 6, 3)
    assert torch.allclose(values.sum(-1), qs.sum(-1), atol=1e-5)  # every agent in exactly one sub-team
    for k in range(3):
        assert torch.allclose(values[..., k], (qs * (subteams == k)).sum(-1), atol=1e-6)


def test_vast_baseline_is_the_epsilon_greedy_expectation():
    q = torch.tensor([[1.0, 5.0, 3.0]])
    avail = torch.tensor([[True, False, True]])  # the greedy available action is 2
    assert epsilon_greedy_expectation(q, avail, 0.5).item() == pytest.approx(0.5 * 3.0 + 0.5 * (1.0 + 3.0) / 2)


@pytest.mark.parametrize("mixer", ["qmix", "vdn", "mlp"])
def test_vast_learns_its_assignment(mixer):
    """With 8 agents (K = 2), one update moves the assignment network (its policy gradient reaches it)."""
    from algorithms.vast import VAST, VASTConfig

    spec = EnvSpec(name="test/eight", family="test", n_agents=8, obs_dim=3, state_dim=4, n_actions=2, episode_limit=3)
    algo = VAST(spec, VASTConfig(hidden_sizes=[8], rnn_hidden_size=8, batch_episodes=2, mixer=mixer),
                torch.device("cpu"))
    assert algo.n_subteams == 2
    before = [p.detach().clone() for p in algo.assignment.parameters()]
    batch = {"obs": torch.randn(2, 4, 8, 3), "state": torch.randn(2, 4, 4), "actions": torch.randint(0, 2, (2, 4, 8)),
             "avail": torch.ones(2, 4, 8, 2, dtype=torch.bool), "reward": torch.randn(2, 4),
             "terminated": torch.tensor([[False, False, True, False]] * 2),
             "filled": torch.tensor([[True, True, True, False]] * 2)}
    losses = algo.update(batch)
    assert losses["assignment_entropy"] > 0
    assert any(not torch.equal(b, p) for b, p in zip(before, algo.assignment.parameters(), strict=True))


@pytest.mark.parametrize("algo", ["lan", "lan_mean", "iql_no_fog", "vast"])
def test_a_resumed_run_continues_bitwise(tmp_path, algo):
    cls = ALGORITHMS.get(algo).load()
    hparams = {**load_algo_file(algo).hparams, "n_envs": 3, "buffer_episodes": 10, "batch_episodes": 4,
               "target_update_interval": 3, "epsilon_anneal_steps": 100, "hidden_sizes": [16], "rnn_hidden_size": 8}

    def build():
        env = CountingGame(3, seed=0)
        return env, cls(env.spec, cls.Config(**hparams), torch.device("cpu"))

    seed_everything(0)
    env, algorithm = build()
    timestep = env.reset()
    for _ in range(6):
        timestep = algorithm.train_iteration(env, timestep).timestep
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, algorithm, env, timestep, Progress())

    def continue_(algorithm, env, timestep):
        losses = []
        for _ in range(4):
            result = algorithm.train_iteration(env, timestep)
            timestep = result.timestep
            losses.append(result.losses)
        return losses, [p.detach().clone() for p in algorithm.learner.params]

    reference_losses, reference_params = continue_(algorithm, env, timestep)
    seed_everything(123)
    env2, fresh = build()
    timestep2, _ = load_checkpoint(path, fresh, env2)
    losses, params = continue_(fresh, env2, timestep2)
    assert losses == reference_losses and all(losses)
    assert all(torch.equal(a, b) for a, b in zip(params, reference_params, strict=True))


# LAN Table 1 (thousands, rounded): the claim check itself, for the four maps it prints.
TABLE_1 = {"5m_vs_6m": (56, 43, 32), "10m_vs_11m": (68, 106, 70), "27m_vs_30m": (111, 709, 283),
           "bane_vs_bane": (125, 555, 241)}


def test_smac_sizes_are_smac_s_formulas():
    """5m_vs_6m by hand (SMAC's defaults): obs = 4 move + 6 enemies x 5 + 4 allies x 5 + 1 own = 55; state =
    5 x 4 + 6 x 3 + 5 x 12 last actions = 98. 2s3z (Protoss, 2 type bits): obs 4 + 5 x 8 + 4 x 8 + 4 = 80."""
    sizes = smac_sizes(5, 6, "T", "T", 0)
    assert (sizes["obs"], sizes["state"], sizes["state_no_last_action"], sizes["n_actions"]) == (55, 98, 38, 12)
    assert smac_sizes(5, 5, "P", "P", 2)["obs"] == 80 and smac_sizes(5, 5, "P", "P", 2)["unit_dim"] == 7


def test_parameter_counts_are_lan_tables_1_and_3():
    values = lan_parameter_counts()["values"]
    for name, (lan, qplex, qmix) in TABLE_1.items():
        assert (values[f"{name}.lan.value"], values[f"{name}.qplex.mixer"], values[f"{name}.qmix.mixer"]) == \
            (lan, qplex, qmix), name
    # and every claim of claims/lan.yaml on this analysis holds (Table 3's 14 maps, 5.2's ratios)
    claims = [c for c in yaml.safe_load((claims_dir() / "lan.yaml").read_text())["claims"]
              if c.get("analysis") == "lan-parameter-counts"]
    assert len(claims) == 45
    for claim in claims:
        published = claim["published"]
        assert abs(values[claim["key"]] - published["value"]) <= published["tolerance"], claim["id"]
