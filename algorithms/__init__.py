"""Cooperative MARL algorithms: shared building blocks, one module per method, a registry."""
