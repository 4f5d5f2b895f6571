"""The shared base: errors, registries, result I/O and schema, provenance. Imports nothing above it
(not environments, algorithms, the driver or the leaderboard; checked by import-linter, see pyproject.toml)."""
