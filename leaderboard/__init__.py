"""The last stages of the coopbench DAG: aggregate -> stats -> figures -> site.

Each stage reads only the files the stage before it wrote; see `python -m leaderboard --help`.
"""
