"""Pieces every script of the recipe shares: config, data, the two model backends, JSONL files.

The entry points (train_grpo.py, eval_grpo.py, offline.py, plots.py, bench/) import from here and
never from each other. Importing any module here has no side effects and loads no heavy library.
"""
