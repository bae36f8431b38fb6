"""Business time: calendars (time zone, opening hours, holidays), the exact maths of adding
and measuring time while a desk is open, and the YAML forms admins write calendars and
durations in.

It sits below both users of it: rules (a condition on whether the desk is open) and sla
(deadlines in business hours). It imports nothing else of maild, so neither of those
needs the other.
"""
