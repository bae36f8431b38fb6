"""SLA support: business calendars and the business-time maths behind SLA clocks."""
