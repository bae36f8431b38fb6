"""Scheduled jobs that run once per due time, across restarts and daemons sharing a database.

A job is a pure answer to "what is due at time T" (`Job.due`, with the helpers of
`schedule.py`) plus an action; the runner (`runner.py`) claims the due time with a unique
row (`runs.claim`) in the same transaction as the action's outbox rows and events, as the
SLA alerts do. A job that acts on many items (tickets to remind, surveys to send) claims
each item the same way, under a key of its own.
"""
