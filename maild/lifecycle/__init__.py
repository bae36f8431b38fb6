"""A ticket's life after the agents' last word (issue 18): a ticket waiting for the
customer is reminded once, then resolved when nobody answers; a resolved ticket is closed
after a while. `days.py` decides when (pure), `jobs.py` acts (a scheduled job)."""
