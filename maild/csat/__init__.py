"""Customer satisfaction: the survey after resolution, ratings by mail, and the satisfaction
guarantee (a low rating reaches management).

Events written (the KPI report reads them): `csat.survey_queued` {to},
`csat.survey_skipped` {reason}, `csat.rated` {score, comment, agent, level, department},
`csat.opted_out` {address}, `csat.guarantee` {score, comment, case}.
"""
