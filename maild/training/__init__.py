"""Trainees and mentors (issue 17, part A).

A trainee's reply meant for a customer is held as a draft (`drafts.py`) and sent only when
their mentor approves it by mail; who may decide and who is reminded are pure decisions
(`mentor.py`); waiting drafts remind the mentor, then the mentor's team (`reminders.py`);
the per-trainee counts are `counts.py`. The mentor's mail itself is read in
maild/agents/review.py.
"""
