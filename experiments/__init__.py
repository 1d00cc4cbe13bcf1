"""Experiment orchestration: ``python -m experiments.compare`` and ``python -m experiments.benchmark``."""
