"""SLA: policies (which targets a ticket gets), the deadlines they give, and the periodic
pass that warns and acts on breaches. The calendar maths is `maild.businesstime`."""
