"""Building blocks written once and assembled by the methods: networks, rollout storage, GAE, the PPO loss,
value normalization, optimizers, trust-region steps; the on-policy parts (policy, value critic, rollout
collector, PPO and sequential updates, learning-rate annealing)."""
