"""Canned answers by command, and solutions that flow back (issue 17, part B).

`catalogue.py`: which canned answers exist (template files that are not maild's own mail),
their languages, first lines and recent uses; `compose.py`: an agent's text around a canned
answer, rendered for the ticket like the rule-driven ones.
"""
