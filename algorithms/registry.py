"""Every algorithm coopbench can run, by name, with what it can run on: its Capabilities, declared here, one per
registration (the plan and `coopbench run` check them against the task before anything is built)."""

from algorithms.capabilities import Capabilities
from coopbench.base.registry import Registry

ALGORITHMS = Registry("algorithm")
_CAPABILITIES: dict[str, Capabilities] = {}
# The on-policy family: discrete and continuous actions, team and private rewards, MLP or GRU torsos.
ON_POLICY = Capabilities()
SEED_BATCHED = Capabilities(seed_batch=True)  # methods built with n_seeds (docs/architecture.md, "Seed batches")


def register(name: str, family: str, target: str, summary: str, capabilities: Capabilities) -> None:
    ALGORITHMS.register(name, family, target, summary)
    _CAPABILITIES[name] = capabilities


def capabilities(name: str) -> Capabilities:
    """What algorithm `name` can run on (an unknown name: the registry's one-line error)."""
    return _CAPABILITIES[ALGORITHMS.get(name).name]


register("mappo", "on_policy", "algorithms.mappo:MAPPO",
         "PPO with a centralized critic on the global state (Yu et al. 2022)", SEED_BATCHED)
register("ippo", "on_policy", "algorithms.ippo:IPPO",
         "PPO with per-agent critics on local observations (de Witt et al. 2020)", SEED_BATCHED)
register("ippo_private", "on_policy", "algorithms.ippo:IPPO",
         "IPPO where each agent learns from its own reward only (AS Fig. 6's independent reference)",
         Capabilities(needs_private_rewards=True, seed_batch=True))
register("happo", "on_policy", "algorithms.happo:HAPPO",
         "agents updated in turn, weighted by earlier agents' ratios (Kuba et al. 2022)", SEED_BATCHED)
register("hatrpo", "on_policy", "algorithms.hatrpo:HATRPO",
         "HAPPO's sequential scheme with a KL-constrained trust-region step per agent (Kuba et al. 2022)", SEED_BATCHED)
register("optimistic_mappo", "on_policy", "algorithms.optimistic_mappo:OptimisticMAPPO",
         "MAPPO with leaky-ReLU-clipped advantages (Zhao et al. 2024)", SEED_BATCHED)
register("centralized_ppo", "on_policy", "algorithms.centralized_ppo:CentralizedPPO",
         "one PPO policy over the joint action space on the global state (AS Fig. 6)",
         Capabilities(continuous=False, joint_action_limit="max_joint_actions", seed_batch=True))
# Paper methods (issue 6). CORA: core advantage decomposition (CORA paper, sec. 4); the variants share the class
# and differ in their config files (config/algorithms/<name>.yaml).
CORA = Capabilities(coalition_limit="max_coalitions", team_advantage=True, seed_batch=True)
register("cora", "on_policy", "algorithms.cora:CORA",
         "PPO with per-agent credits from the strong epsilon-core QP of coalitional advantages (CORA eq. 8)", CORA)
register("cora_no_std", "on_policy", "algorithms.cora:CORA",
         "CORA-PPO without the variance term of eq. 8 (CORA Fig. 2f, Fig. 8)", CORA)
register("cora_qc", "on_policy", "algorithms.cora:CORA",
         "CORA-PPO with the quadratic critic and closed-form coalition values (CORA 6.1)", CORA)
for _m in (10, 15, 20, 25):
    register(f"cora_m{_m}", "on_policy", "algorithms.cora:CORA",
             f"CORA-PPO with {_m} sampled coalitions per sample (CORA eq. 19, Fig. 8 right)", CORA)
# ACPO: agent-chained policy optimization (ACPO paper, sec. 6 and App. L); ACPI: its exact policy iteration.
register("acpo", "on_policy", "algorithms.acpo:ACPO",
         "serialized agents with beliefs over preceding actions and chained advantages (ACPO sec. 6)", SEED_BATCHED)
register("acpo_no_chain", "on_policy", "algorithms.acpo:ACPO",
         "ACPO without agent chaining: MAPPO with belief inputs (ACPO Fig. 4 ablation)", SEED_BATCHED)
register("acpi", "tabular", "algorithms.acpi:ACPI",
         "agent-chained policy iteration on the exact model of a small game (ACPO Alg. 2)",
         Capabilities(continuous=False, needs_model=True, joint_action_limit="max_model_size", recurrent=False,
                      seed_batch=True))
# The value-based family (issue 14): discrete actions, recurrent agent Q-networks on episode replay (algorithms/
# value_based.py); each method's file holds its networks and its TD loss.
VB_BATCHED = Capabilities(continuous=False, seed_batch=True)  # built with n_seeds (value_based.py)
register("iql", "value_based", "algorithms.iql:IQL",
         "independent Q-learning with recurrent agents and episode replay (Tampuu et al. 2015; PyMARL)", VB_BATCHED)
register("vdn", "value_based", "algorithms.vdn:VDN",
         "value decomposition: Q_tot is the sum of the agents' Q (Sunehag et al. 2018)", VB_BATCHED)
register("qmix", "value_based", "algorithms.qmix:QMIX",
         "monotonic mixing of agent Q-values by state-conditioned hypernetworks (Rashid et al. 2018)", VB_BATCHED)
register("qplex", "value_based", "algorithms.qplex:QPLEX",
         "duplex dueling: Q_tot = sum V_a + sum lambda_a(s, u) A_a, IGM by construction (Wang et al. 2021)",
         VB_BATCHED)
register("qtran", "value_based", "algorithms.qtran:QTRAN",
         "QTRAN-base: joint Q_jt and V_jt tied to sum Q_a by the L_opt / L_nopt losses (Son et al. 2019)",
         VB_BATCHED)
register("iql_no_fog", "value_based", "algorithms.iql:IQL",
         "IQL whose agents observe the global state instead of their observation (LAN 5.4)", VB_BATCHED)
register("lan", "value_based", "algorithms.lan:LAN",
         "local advantage networks: Q~_a = V(s, tau) + A_a(tau_a, u_a), one centralized value (LAN eq. 1, 3)",
         VB_BATCHED)
register("lan_mean", "value_based", "algorithms.lan:LAN",
         "LAN with zero-mean local advantages (LAN eq. 6, App. D)", VB_BATCHED)
register("vast", "value_based", "algorithms.vast:VAST",
         "QMIX over K = ceil(N/4) sub-team values from a learned sub-team assignment (Phan et al. 2021)", VB_BATCHED)
register("vast_heuristic", "value_based", "algorithms.vast:VAST",
         "VAST whose K = ceil(N/4) sub-teams come from BN Algorithm 1 on the agents' positions (BN 6.2.2)",
         Capabilities(continuous=False, needs_positions=("subgroups", "heuristic", "views"), seed_batch=True))
# BN (issue 17): tabular softmax BN policy gradient ascent on the exact model (BN sec. 4-5, 6.1), one DAG per name.
BN_TABULAR = Capabilities(continuous=False, needs_model=True, joint_action_limit="max_model_size", recurrent=False,
                          subteam_sizes="subteams", seed_batch=True)
for _dag, _what in (("product", "no edges"), ("full", "every pair connected"), ("line", "agent i -> i + 1"),
                    ("subteam", "K subteams (algo.subteams)"), ("subteam_1_4", "subteams 1+4"),
                    ("subteam_2_3", "subteams 2+3")):
    register(f"bn_tabular_{_dag}", "tabular", "algorithms.bn_tabular:BNTabular",
             f"exact log-barrier policy gradient of a tabular softmax BN policy, {_what} (BN eq. 2-3, 6.1)", BN_TABULAR)
# BN (issue 17): MAPPO with a BN actor over a DAG (BN 6.2.1, Fig. 2); one class, the DAG is the config's `topology`.
for _topology, _what in (("full", "the full DAG"), ("product", "the product DAG (no edges)"),
                         ("random", "a random DAG of at most B edges"),
                         ("heuristic", "BN Algorithm 1's subteams under B edges, recomputed every step")):
    register(f"bn_mappo_{_topology}", "on_policy", "algorithms.bn_mappo:BNMAPPO",
             f"MAPPO whose agents sample in a DAG's order, each conditioned on its parents' actions: {_what} "
             "(BN 6.2.1)", Capabilities(needs_positions=("topology", "heuristic", "step"), seed_batch=True))
# AS (issue 16): Anticipation Sharing on private rewards (AS sec. 4.3, Algorithm 1); the variants share the class and
# differ in their config files (protocols of AS 5.3, rho = 0 of Fig. 5).
AS = Capabilities(continuous=False, needs_private_rewards=True, recurrent=False, seed_batch=True)
register("as", "on_policy", "algorithms.anticipation_sharing:AnticipationSharing",
         "agents exchange action distributions and anticipations of each other's, never rewards (AS eq. 16)", AS)
register("as_one_neighbour", "on_policy", "algorithms.anticipation_sharing:AnticipationSharing",
         "AS where each agent exchanges with one randomly chosen agent per update (AS 5.3, Fig. 3)", AS)
register("as_every_k", "on_policy", "algorithms.anticipation_sharing:AnticipationSharing",
         "AS communicating every second update, independent PPO in between (AS 5.3, Fig. 3)", AS)
register("as_rho0", "on_policy", "algorithms.anticipation_sharing:AnticipationSharing",
         "AS without the discrepancy constraints, rho = 0 (AS 5.3 ablation, Fig. 5)", AS)
# AS's baselines (AS 5.2): PPO on private rewards sharing values or parameters with neighbours (one class, `sharing`).
NETWORKED = Capabilities(continuous=False, needs_private_rewards=True, recurrent=False, seed_batch=True)
register("vs", "on_policy", "algorithms.networked_ppo:NetworkedPPO",
         "value sharing: advantages on the neighbourhood-averaged values (AS 5.2, Du et al. 2022)", NETWORKED)
register("vps", "on_policy", "algorithms.networked_ppo:NetworkedPPO",
         "value-function parameter consensus over neighbours (AS 5.2, Zhang et al. 2018b)", NETWORKED)
register("ps", "on_policy", "algorithms.networked_ppo:NetworkedPPO",
         "global-policy parameter consensus over neighbours (AS 5.2, Zhang & Zavlanos 2019)", NETWORKED)
# The off-policy family (issue 15): deterministic actors on continuous actions, transition replay (algorithms/
# off_policy.py); each method's file holds its networks and its update.
OFF_POLICY = Capabilities(discrete=False, recurrent=False, seed_batch=True)  # built with n_seeds (off_policy.py)
register("maddpg", "off_policy", "algorithms.maddpg:MADDPG",
         "deterministic actors on one centralized critic of all actions (Lowe et al. 2017; HARL)", OFF_POLICY)
# BN (issue 17): MADDPG with a BN actor over a DAG (BN 6.2.1, Fig. 2, Predator-Prey); the DAG is `topology`.
for _topology, _what in (("full", "the full DAG"), ("product", "the product DAG (no edges)"),
                         ("random", "a random DAG of at most B edges"),
                         ("heuristic", "BN Algorithm 1's subteams under B edges, recomputed every step")):
    register(f"bn_maddpg_{_topology}", "off_policy", "algorithms.bn_maddpg:BNMADDPG",
             f"MADDPG whose deterministic actors act in a DAG's order on their parents' actions: {_what} (BN 6.2.1)",
             Capabilities(discrete=False, recurrent=False, needs_positions=("topology", "heuristic", "views"),
                          seed_batch=True))
register("hatd3", "off_policy", "algorithms.hatd3:HATD3",
         "TD3 with HAML's sequential actor updates on a centralized twin critic (Zhong et al. 2024)", OFF_POLICY)
register("ac_td3", "off_policy", "algorithms.ac_td3:ACTD3",
         "agent-chained TD3: chained critics Q^(i)([s, a^(<i)], a^(i)) with k-step targets (ACPO App. N)", OFF_POLICY)
