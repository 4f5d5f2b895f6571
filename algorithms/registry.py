"""Every algorithm coopbench can run, by name."""

from coopbench.registry import Registry

ALGORITHMS = Registry("algorithm")

ALGORITHMS.register("mappo", "on_policy", "algorithms.mappo:MAPPO",
                    "PPO with a centralized critic on the global state (Yu et al. 2022)")
ALGORITHMS.register("ippo", "on_policy", "algorithms.ippo:IPPO",
                    "PPO with per-agent critics on local observations (de Witt et al. 2020)")
ALGORITHMS.register("ippo_private", "on_policy", "algorithms.ippo:IPPO",
                    "IPPO where each agent learns from its own reward only (AS Fig. 6's independent reference)")
ALGORITHMS.register("happo", "on_policy", "algorithms.happo:HAPPO",
                    "agents updated in turn, weighted by earlier agents' ratios (Kuba et al. 2022)")
ALGORITHMS.register("hatrpo", "on_policy", "algorithms.hatrpo:HATRPO",
                    "HAPPO's sequential scheme with a KL-constrained trust-region step per agent (Kuba et al. 2022)")
ALGORITHMS.register("optimistic_mappo", "on_policy", "algorithms.optimistic_mappo:OptimisticMAPPO",
                    "MAPPO with leaky-ReLU-clipped advantages (Zhao et al. 2024)")
ALGORITHMS.register("centralized_ppo", "on_policy", "algorithms.centralized_ppo:CentralizedPPO",
                    "one PPO policy over the joint action space on the global state (AS Fig. 6)")
