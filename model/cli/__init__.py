"""``python -m model COMMAND``: the commands that use what a run learned."""
