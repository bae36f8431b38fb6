"""Several daemons on one PostgreSQL: each mailbox is worked by one daemon at a time, under
a lease row renewed by its heartbeat (leases.py), and `maild status` shows who holds what
(status.py). Scheduled jobs and the outbox need nothing here: their unique claims and
`SKIP LOCKED` already make them safe with several daemons.

Why a lease row and not an advisory lock: a lock lives as long as its connection, so a
daemon that hangs (SIGSTOP, a frozen VM) with its connection open would keep its mailboxes
for ever; a lease expires by the clock, whatever the holder's connection does, and every
batch's commit checks in its own transaction that the lease is still its daemon's
(fencing), so a daemon that wakes after losing it writes nothing.
"""
