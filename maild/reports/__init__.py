"""`maild report`: the desk's KPIs over a period, computed by SQL aggregates.

The stages, one module each: `period` (which instants a report covers, in the organisation's
time zone), `query` (the statements: the database's aggregates and per-ticket scalar rows),
`reader` (runs them, two connections on PostgreSQL) into `rows`, `figures` (a pure function
from those rows to the figures), `render` (text, JSON, CSV),
`charts` and `html` (the self-contained page), `command` (the glue the CLI calls).

The report reads the events tickets record (`created`, `status.changed`, `escalated`,
`reply.sent`/`answer.sent` written by the outbox sender the moment the SMTP server took the
mail), the inbound `messages` and the `sla_alerts`. Customer satisfaction is read from two
event kinds that are the contract for the CSAT flow (it writes them; the report only reads):

``csat.survey_queued``
    on the surveyed ticket, when the survey mail goes into the outbox.
    ``data = {"to": address, "agent": address or null, "level": int, "department": str or null}``
``csat.rated``
    on the rated ticket, when the customer's rating is recorded.
    ``data = {"score": 1..5, "comment": str, "agent": address or null, "level": int,
    "department": str or null}`` -- agent, level and department of the ticket at the time of
    the rating. A later rating of the same ticket replaces the earlier one (both are kept as
    events; the report counts the ticket's latest rating in the period).

Until the CSAT flow writes them, the csat figures are real zeros and nulls.
"""

SURVEY_QUEUED = "csat.survey_queued"
RATED = "csat.rated"
