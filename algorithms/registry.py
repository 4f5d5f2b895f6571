"""Every algorithm coopbench can run, by name."""

from coopbench.registry import Registry

ALGORITHMS = Registry("algorithm")

ALGORITHMS.register("mappo", "on_policy", "algorithms.mappo:MAPPO",
                    "PPO with a centralized critic on the global state (Yu et al. 2022)")
ALGORITHMS.register("ippo", "on_policy", "algorithms.ippo:IPPO",
                    "PPO with per-agent critics on local observations (de Witt et al. 2020)")
