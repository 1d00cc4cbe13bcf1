"""Examples of agents of one's own for ``experiments.compare`` (README, "Compare your own agent")."""
