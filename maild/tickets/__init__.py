"""The ticket service: every change to a ticket, with the events and mail it causes.

The pipeline, the agents' commands, the SLA actions and intake (by mail and by the command
line) all change tickets through `TicketService`; none of them writes ticket rows itself.
"""
