"""The agents' day by email (issue 18): a daily digest of each agent's queue and each
team's unassigned tickets (`job.py`), and queue commands by mail to an agent's own signed
address (`commands.py`). `lines.py` decides what a line says and in which order (pure)."""
