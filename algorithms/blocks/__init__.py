"""Building blocks written once and assembled by the methods: networks, rollout storage, GAE, the PPO loss,
value normalization, optimizers, trust-region steps."""
