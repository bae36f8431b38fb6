"""The feature-request register (issue 16): every wish a customer voices, counted, with
its status, reasons and history; worked by mail like everything else.

One job a module: `models` (tables), `match` (is this wish one we have: pure), `rules`
(counts, re-review, status changes, quality management's commands: pure), `store` (reads
and writes), `register` (the operations), `mail` (who is told what), `inbox` (quality
management's mail), `views` and `cli` (the command line).
"""
