"""AS (Anticipation Sharing, issue 16): eq. 16 by hand, rho = 0 against independent PPO, the protocols' messages,
a bitwise restore, and the 2-predator dilemma where AS cooperates and IPPO on private rewards defects."""

import io
import math

import pytest
import torch

from algorithms.anticipation_sharing import AnticipationSharing, anticipation_objective
from algorithms.ippo import IPPO
from algorithms.registry import ALGORITHMS
from coopbench.config import resolve
from coopbench.run import seed_everything
from environments import make
from environments.seed_batch import seed_view

CPU = torch.device("cpu")


def agent_for(algo, env_name, n_envs=2, seed=0, env_params=None, build=None, **hparams):
    config = resolve(algo, env_name)
    seed_everything(seed)
    env = make(env_name, n_envs=n_envs, seed=seed, **{**config.env_params, **(env_params or {})})
    cls = ALGORITHMS.get(algo).load()
    return cls(env.spec, cls.Config(**{**config.algo_hparams, "n_envs": n_envs, **hparams}), CPU, **(build or {})), env


def log(*probs):
    return torch.tensor(probs).log()


# --- eq. 16 ---------------------------------------------------------------------------------------------
def hand_batch():
    """One state, agents 0 and 1 (neighbours), two actions; every number below is worked out in the test."""
    own = torch.stack([log(0.6, 0.4), log(0.5, 0.5)]).unsqueeze(0)  # pi^00, pi^11
    antic = torch.zeros(1, 2, 2, 2)
    antic[0, 0, 1] = log(0.3, 0.7)  # pi^01: agent 0's anticipation of agent 1
    antic[0, 1, 0] = log(0.8, 0.2)  # pi^10
    antic[0, 0, 0] = antic[0, 1, 1] = log(0.5, 0.5)  # diagonal: never read
    actions = torch.tensor([[0, 1]])
    own_old = log(0.4, 0.5).unsqueeze(0)  # xi_0 = 0.6 / 0.4 = 1.5 (clipped to 1.2), xi_1 = 0.5 / 0.5 = 1
    antic_old = torch.zeros(1, 2, 2)
    antic_old[0, 0, 1] = math.log(0.7)  # xi_N0 = 0.7 / 0.7 = 1
    antic_old[0, 1, 0] = math.log(0.4)  # xi_N1 = 0.8 / 0.4 = 2
    advantages = torch.tensor([[1.0, -1.0]])
    # The messages: each agent's current distribution and anticipations (as at an iteration's first step).
    return own, antic, own_old, antic_old, actions, advantages, own.clone(), antic.clone()


def test_eq16_on_a_hand_computed_batch_with_both_clips():
    own, antic, own_old, antic_old, actions, adv, msg_own, msg_antic = hand_batch()
    graph = torch.ones(1, 2, 2, dtype=torch.bool)
    kappa = torch.tensor([1.0, 0.5])
    objective, _ = anticipation_objective(own, antic, own_old, antic_old, actions, adv, msg_own, msg_antic, graph,
                                          kappa, rho=2.0, clip_eps=0.2)
    # Agent 0, A = 1: min(1.5 * 1 * 1, clip(1.5) = 1.2 * 1 * 1) = 1.2 (the clip acts).
    #   X^01: pi^01(a_1)/pi^11(a_1) A = 0.7 / 0.5 = 1.4 >= 1: in; ||pi^01 - pi^11||^2 = 0.2^2 + 0.2^2 = 0.08.
    #   X^00: pi^00(a_0)/pi^10(a_0) A = 0.6 / 0.8 = 0.75 < 1: out.  Penalty 1.0 * 2 * 0.08 = 0.16 -> 1.04.
    # Agent 1, A = -1: xi_1 = 1 inside the clip range, xi_N1 = 2: min(-2, -2) = -2 (the clip does not act).
    #   X^10: pi^10(a_0)/pi^00(a_0) A = -0.8 / 0.6 = -1.33 < -1: out.
    #   X^11: pi^11(a_1)/pi^01(a_1) A = -0.5 / 0.7 = -0.71 >= -1: in; ||pi^11 - pi^01||^2 = 0.08.
    #   Penalty 0.5 * 2 * 0.08 = 0.08 -> -2.08.
    assert torch.allclose(objective, torch.tensor([[1.04, -2.08]]), atol=1e-5)
    # Without neighbours: xi_N = 1 and no discrepancy terms, PPO-Clip per agent: [min(1.5, 1.2), -1].
    alone, _ = anticipation_objective(own, antic, own_old, antic_old, actions, adv, msg_own, msg_antic,
                                      torch.zeros_like(graph), kappa, rho=2.0, clip_eps=0.2)
    assert torch.allclose(alone, torch.tensor([[1.2, -1.0]]), atol=1e-6)
    # The clip acting on the negative side: A_1 = -1 with xi_1 = 0.5 (below 0.8): min(-0.5, -0.8) = -0.8.
    low_old = log(0.4, 1.0).unsqueeze(0)
    clipped, _ = anticipation_objective(own, antic, low_old, antic_old, actions, adv, msg_own, msg_antic,
                                        torch.zeros_like(graph), kappa, rho=2.0, clip_eps=0.2)
    assert torch.allclose(clipped[0, 1], torch.tensor(-0.8), atol=1e-6)


def test_eq16_reads_only_the_neighbours_messages_and_gradients_reach_the_right_networks():
    torch.manual_seed(0)
    n, a, s = 3, 4, 5
    own = torch.randn(s, n, a).log_softmax(-1).requires_grad_()
    antic = torch.randn(s, n, n, a).log_softmax(-1).requires_grad_()
    actions = torch.randint(0, a, (s, n))
    own_old = own.detach().gather(-1, actions.unsqueeze(-1)).squeeze(-1) + 0.1 * torch.randn(s, n)
    antic_old = torch.randn(s, n, n) - 1.5
    adv, kappa = torch.randn(s, n), torch.rand(n) + 0.5
    msg_own, msg_antic = torch.randn(s, n, a).log_softmax(-1), torch.randn(s, n, n, a).log_softmax(-1)
    chain = torch.tensor([[0, 1, 0], [1, 0, 1], [0, 1, 0]], dtype=torch.bool).expand(s, n, n)  # 0 - 1 - 2
    args = dict(actions=actions, advantages=adv, graph=chain, kappa=kappa, rho=3.0, clip_eps=0.2)
    base, _ = anticipation_objective(own, antic, own_old, antic_old, msg_own=msg_own, msg_antic=msg_antic, **args)
    # Agent 2's messages reach agent 1 only: changing them leaves agents 0 and 2 untouched, agent 1 not.
    other_own, other_antic = msg_own.clone(), msg_antic.clone()
    other_own[:, 2] = torch.randn(s, a).log_softmax(-1)
    other_antic[:, 2] = torch.randn(s, n, a).log_softmax(-1)
    moved, _ = anticipation_objective(own, antic, own_old, antic_old, msg_own=other_own, msg_antic=other_antic,
                                      **args)
    assert torch.equal(moved[:, 0], base[:, 0]) and torch.equal(moved[:, 2], base[:, 2])
    assert not torch.allclose(moved[:, 1], base[:, 1])
    # Gradients reach pi^ii and the anticipations of neighbours only (0->1, 1->0, 1->2, 2->1), never pi^02, pi^20.
    base.sum().backward()
    reached = antic.grad.abs().sum((0, 3)) > 0
    assert torch.equal(reached, chain[0])
    assert (own.grad.abs().sum((0, 2)) > 0).all()


# --- rho = 0 against independent PPO -----------------------------------------------------------------
def twin_learners(**hparams):
    """AS and IPPO on private rewards with the same networks, on one collected batch."""
    common = dict(normalize_advantages=False, value_normalization=False, ppo_epochs=hparams.pop("ppo_epochs", 1))
    agent, env = agent_for("as_rho0", "gridworld/as-coop-predation-2", n_envs=4, **common, **hparams)
    # both in the seed-batch layout of one seed, so they update one storage
    ippo, _ = agent_for("ippo_private", "gridworld/as-coop-predation-2", n_envs=4, seed=1, **common)
    assert isinstance(ippo, IPPO) and isinstance(agent, AnticipationSharing)
    ippo.actor.net.load_state_dict(agent.actor.net.state_dict())
    ippo.critic.net.load_state_dict(agent.critic.net.state_dict())
    storage = agent.collect(env, env.reset()).storage
    # the same minibatch draws: each part's random stream where AS's stands after collecting
    ippo.actor.streams.load_state_dict(agent.actor.streams.state_dict())
    ippo.critic.streams.load_state_dict(agent.critic.streams.state_dict())
    return agent, ippo, storage


def updated(learner, storage):
    copy = type(storage)(storage.length)
    copy.fields = {k: v.clone() for k, v in storage.fields.items()}
    streams = learner.actor.streams.state_dict(), learner.critic.streams.state_dict()
    losses = learner.update(copy)
    learner.actor.streams.load_state_dict(streams[0])  # the next comparison draws the same minibatches again
    learner.critic.streams.load_state_dict(streams[1])
    return losses, {k: v.clone() for k, v in learner.actor.net.state_dict().items()}


def test_rho0_reduces_to_independent_ppo_on_the_same_batch():
    agent, ippo, storage = twin_learners(rho=0.0)
    ours, our_actor = updated(agent, storage)
    theirs, their_actor = updated(ippo, storage)
    # One gradient step (K = 1): the anticipations' ratio xi_N is still 1 and rho = 0 removes the discrepancy
    # terms, so eq. 16 is PPO-Clip per agent on its private advantage: the same policy, loss and critic.
    for name, value in their_actor.items():
        assert torch.allclose(our_actor[name], value, atol=1e-7), name
    for name, value in ippo.critic.net.state_dict().items():
        assert torch.equal(agent.critic.net.state_dict()[name], value), name
    assert ours["policy_loss"][0] == pytest.approx(theirs["policy_loss"][0], abs=1e-7)  # seed 0 of a batch of one
    assert ours["value_loss"][0] == pytest.approx(theirs["value_loss"][0], abs=1e-7)


def test_rho0_keeps_the_anticipation_ratio_over_several_iterations():
    """rho = 0 drops the constraints only (AS 5.3): over K > 1 steps the anticipations move and xi_N reweighs the
    samples, so the own policy leaves independent PPO's path; in a communication gap it does not."""
    agent, ippo, storage = twin_learners(rho=0.0, ppo_epochs=3)
    _, our_actor = updated(agent, storage)
    _, their_actor = updated(ippo, storage)
    assert any(not torch.allclose(our_actor[k], v, atol=1e-7) for k, v in their_actor.items())
    agent, ippo, storage = twin_learners(rho=5.0, ppo_epochs=3, communicate_every=2)
    agent.protocol.updates = 1  # an update between two communications
    _, our_actor = updated(agent, storage)
    _, their_actor = updated(ippo, storage)
    for name, value in their_actor.items():
        assert torch.allclose(our_actor[name], value, atol=1e-6), name


# --- the protocols' messages ------------------------------------------------------------------------
def test_all_neighbours_sends_one_message_per_neighbour_step_and_iteration():
    agent, env = agent_for("as", "gridworld/as-exchange", n_envs=2, rollout_length=10, ppo_epochs=3)
    losses = agent.train_iteration(env, env.reset()).losses
    # Exchange's chain 0 - 1 - 2: 4 (sender, receiver) pairs; per pair and step, pi^jj(.), pi^ji(.) (6 actions
    # each) and a_j: 13 floats; K = 3 exchanges per update; 10 steps x 2 copies; averaged over the 3 agents.
    expected = 3 * 10 * 2 * 4 * 13 / 3
    assert losses["comm_floats_per_agent_update"] == expected
    assert losses["comm_bytes_per_agent"] == 4 * expected
    losses = agent.train_iteration(env, env.reset()).losses
    assert losses["comm_floats_per_agent"] == 2 * expected  # summed since the start


def test_predation_neighbourhoods_change_per_step_and_are_followed():
    agent, env = agent_for("as", "gridworld/as-coop-predation-8", n_envs=3, rollout_length=30, ppo_epochs=2)
    rollout = agent.collect(env, env.reset())
    graphs = rollout.storage["neighbours"]
    assert graphs.shape == (30, 1, 3, 8, 8) and not torch.equal(graphs[0], graphs[-1])  # [T, K = 1 seed, B]: they move
    losses = agent.update(rollout.storage)
    assert losses["comm_floats_per_agent_update"] == [2 * graphs.sum().item() * (2 * 2 + 1) / 8]


def test_one_random_neighbour_exchanges_with_exactly_the_picked_agents():
    agent, env = agent_for("as_one_neighbour", "gridworld/as-coop-predation-20", n_envs=2, rollout_length=5,
                           ppo_epochs=1)
    task = torch.zeros(5, 2, 20, 20, dtype=torch.bool)
    for _ in range(5):
        draws = torch.Generator()
        draws.set_state(agent.protocol.streams.generators[0].get_state())  # the seed's stream
        graph = agent.protocol.communication_graph(task)
        assert torch.equal(graph, graph.transpose(-1, -2)) and torch.equal(graph[0], graph[-1])  # both ways, fixed
        assert not graph.diagonal(dim1=-2, dim2=-1).any()
        # agent i's pick: a uniform index among the 19 others; the pair exchanges, nobody else
        pick = torch.randint(0, 19, (2, 20), generator=draws)
        pick = pick + (pick >= torch.arange(20))
        for b in range(2):
            for i in range(20):
                assert graph[0, b, i, pick[b, i]]
                assert set(graph[0, b, i].nonzero().flatten().tolist()) == (
                    {int(pick[b, i])} | set((pick[b] == i).nonzero().flatten().tolist()))
            assert 10 <= graph[0, b].sum().item() / 2 <= 20  # 20 picks, each edge carrying one or two
        agent.protocol.updates += 1
    draws = torch.Generator()
    draws.set_state(agent.protocol.streams.generators[0].get_state())
    expected = agent.protocol.communication_graph(task)
    agent.protocol.streams.generators[0].set_state(draws.get_state())
    losses = agent.train_iteration(env, env.reset()).losses
    # K = 1 exchange x 5 steps over the picked pairs, 2|A| + 1 = 5 floats each, averaged over the 20 agents
    assert losses["comm_floats_per_agent_update"] == expected.sum().item() * 5 / 20
    assert losses["comm_floats_per_agent_update"] <= 5 * 2 * 2 * 5  # at most 2 neighbours per agent on average


def test_every_k_communicates_on_every_kth_update_only():
    agent, env = agent_for("as_every_k", "gridworld/as-exchange", n_envs=1, rollout_length=12, ppo_epochs=2)
    assert agent.config.communicate_every == 2
    timestep, sent, moved = env.reset(), [], []
    for _ in range(4):
        before = [p.clone() for p in agent.anticipation.net.parameters()]
        result = agent.train_iteration(env, timestep)
        timestep = result.timestep
        sent.append(result.losses["comm_floats_per_agent_update"])
        moved.append(any(not torch.equal(b, p) for b, p in zip(before, agent.anticipation.net.parameters(),
                                                                 strict=True)))
        if sent[-1] == 0:
            assert result.losses["penalty"] == 0.0 and result.losses["ratio_n_mean"] == 1.0
    per_exchange = 2 * 12 * 4 * 13 / 3  # K = 2, chain 0 - 1 - 2 (4 pairs), 13 floats
    assert sent == [per_exchange, 0.0, per_exchange, 0.0]
    assert moved == [True, False, True, False]  # no anticipation update in the gaps (AS 5.3)


# --- restore -----------------------------------------------------------------------------------------------
def test_killed_and_restored_agent_continues_bitwise():
    hp = dict(protocol="one_random", communicate_every=2, rollout_length=10)
    agent, env = agent_for("as", "gridworld/as-coop-predation-8", n_envs=2, **hp)
    timestep = env.reset()
    for _ in range(3):
        timestep = agent.train_iteration(env, timestep).timestep
    buffer = io.BytesIO()
    torch.save({"agent": agent.state_dict(), "env": env.state_dict(), "rng": torch.get_rng_state(),
                "timestep": timestep}, buffer)

    def continue_training(learner, environment, ts):
        out = []
        for _ in range(3):
            result = learner.train_iteration(environment, ts)
            ts = result.timestep
            out.append(result.losses)
        return out, learner.state_dict()

    reference, ref_state = continue_training(agent, env, timestep)
    fresh, fresh_env = agent_for("as", "gridworld/as-coop-predation-8", n_envs=2, seed=9, **hp)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=False)
    fresh.load_state_dict(saved["agent"])
    fresh_env.load_state_dict(saved["env"])
    torch.set_rng_state(saved["rng"])
    resumed, resumed_state = continue_training(fresh, fresh_env, saved["timestep"])
    assert resumed == reference
    for key in ("policy", "anticipation", "critic"):
        for name, value in ref_state[key].items():
            assert torch.equal(resumed_state[key][name], value), (key, name)


def test_as_refuses_shared_parameters_and_pooled_statistics():
    with pytest.raises(ValueError, match="share_parameters"):
        agent_for("as", "gridworld/as-coop-predation-2", share_parameters=True)
    with pytest.raises(ValueError, match="value_normalization"):
        agent_for("as", "gridworld/as-coop-predation-2", value_normalization=True)


# --- the dilemma -------------------------------------------------------------------------------------------
def greedy_return(learner, env_params, seed):
    env = make("gridworld/as-coop-predation-2", n_envs=16, seed=seed, **env_params)
    timestep, memory, total = env.reset(), learner.initial_memory(16), torch.zeros(16)
    for _ in range(30):
        actions, memory = learner.act(timestep, memory, True)
        timestep = env.step(actions)
        total += timestep.reward.sum(-1)
    return total.mean().item()


@pytest.mark.slow
def test_as_cooperates_in_the_two_predator_dilemma_where_ippo_private_defects():
    """2-predator Cooperative Predation is a per-step prisoner's dilemma on private rewards (both pursue -1 each,
    both defect -3 each, a lone pursuer -4 and the defector 0: T > R > P > S). Neighbourhood radius 1 (the two
    always exchange). Faster learning than A.3 (lr 3e-3, 8 copies) and rho = 10 to fit a test's budget."""
    params = {"neighbour_radius": 1.0}
    hp = dict(lr_actor=3e-3, lr_critic=3e-3)
    for seed in (0, 1, 2):
        outcome = {}
        for algo, extra in (("as", {"rho": 10.0}), ("ippo_private", {})):
            learner, env = agent_for(algo, "gridworld/as-coop-predation-2", n_envs=8, seed=seed, env_params=params,
                                     **hp, **extra)
            timestep = env.reset()
            for _ in range(100):
                timestep = learner.train_iteration(env, timestep).timestep
            outcome[algo] = greedy_return(learner, params, 100 + seed)
        # Mutual pursuit every step is -60, mutual defection -180 (a lone pursuer step costs the team -4).
        assert outcome["as"] > -75, (seed, outcome)
        assert outcome["ippo_private"] < -150, (seed, outcome)


# --- the baselines VS, VPS, PS (AS 5.2) ------------------------------------------------------------------
def connected_graph(n, extra, seed):
    generator = torch.Generator().manual_seed(seed)
    graph = torch.zeros(n, n, dtype=torch.bool)
    idx = torch.arange(n - 1)
    graph[idx, idx + 1] = True  # a chain: connected
    graph |= torch.rand(n, n, generator=generator) < extra
    graph = (graph | graph.T) & ~torch.eye(n, dtype=torch.bool)
    return graph


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metropolis_consensus_preserves_the_average_and_converges_to_it(seed):
    from algorithms.blocks.protocol import consensus_step, metropolis_weights

    graph = connected_graph(7, 0.2, seed)
    weights = metropolis_weights(graph)
    assert torch.allclose(weights, weights.T) and (weights >= 0).all()
    assert torch.allclose(weights.sum(0), torch.ones(7)) and torch.allclose(weights.sum(1), torch.ones(7))
    assert ((weights > 0) == (graph | torch.eye(7, dtype=torch.bool))).all()  # only neighbours are weighted
    x = torch.randn(7, 3, 4, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    mean = x.mean(0)
    y = consensus_step(weights, x)
    assert torch.allclose(y.mean(0), mean, atol=1e-12)  # one step keeps the neighbourhood-graph average
    for _ in range(500):
        y = consensus_step(weights, y)
    assert torch.allclose(y, mean.expand_as(y), atol=1e-8)  # and repeated steps reach it on a connected graph
    # Two components keep two averages: connectivity is what makes the consensus global.
    split = graph.clone()
    split[:3, 3:] = split[3:, :3] = False
    z = x
    for _ in range(500):
        z = consensus_step(metropolis_weights(split), z)
    assert torch.allclose(z[:3], x[:3].mean(0).expand(3, 3, 4), atol=1e-8)
    assert torch.allclose(z[3:], x[3:].mean(0).expand(4, 3, 4), atol=1e-8)


def test_baselines_share_what_their_papers_share():
    from algorithms.networked_ppo import NetworkedPPO, parameters_per_agent

    sent = {}
    for algo in ("vs", "vps", "ps"):
        agent, env = agent_for(algo, "gridworld/as-exchange", n_envs=2, rollout_length=10, communicate_every=2)
        assert isinstance(agent, NetworkedPPO)
        first = agent.train_iteration(env, env.reset())
        gap = agent.train_iteration(env, first.timestep).losses
        sent[algo] = first.losses["comm_floats_per_agent_update"]
        assert gap["comm_floats_per_agent_update"] == 0.0  # every second update only (AS 5.3)
        pairs = 4  # Exchange's chain 0 - 1 - 2
        if algo == "vs":
            assert sent[algo] == 2 * pairs * 10 * 2 / 3  # V_j(s), V_j(s') per stored step and neighbour
        else:
            module = agent.critic.net if algo == "vps" else agent.actor.net
            assert sent[algo] == parameters_per_agent(module, 3) * pairs / 3
    assert sent["vs"] < sent["vps"] < sent["ps"]  # outputs < a critic < the global policy (AS 2, 6)


def test_ps_agents_act_with_their_own_component_of_the_global_policy():
    from algorithms.blocks.protocol import metropolis_weights
    from algorithms.networked_ppo import group_consensus

    agent, env = agent_for("ps", "gridworld/as-exchange", n_envs=4)
    timestep = seed_view(env.reset(), 1)  # [K = 1 seed, B, ...], as the collector shows it
    step = agent.policy_step(timestep, agent.initial_memory(4))
    net, n = agent.actor.net, 3
    full = net.head.params(net.torso.mlp(agent.copies(timestep.obs)), agent.copies(timestep.avail_actions))
    full = full.view(4, n, n, -1)
    log_probs, actions = step.log_probs[0], step.actions[0]
    for i in range(n):
        assert torch.allclose(log_probs[:, i], full[:, i, i].gather(-1, actions[:, i:i + 1]).squeeze(-1))
    # the consensus step mixes whole copies: agent i's copy of agent j's policy with the others' copies of j's
    before = [p.clone() for p in net.parameters()]
    weights = metropolis_weights(torch.ones(n, n, dtype=torch.bool))
    group_consensus(net, weights, n)
    for b, p in zip(before, net.parameters(), strict=True):
        assert torch.allclose(p.view(n, n, -1), torch.einsum("ik,kjx->ijx", weights, b.view(n, n, -1)), atol=1e-6)
