"""Mail safety: recognise mail that must never be answered automatically.

Two pure detectors sit in front of the ticket logic. `autoreply.classify_automatic` says
whether a message was written by a machine or sent to many (auto-replies, vacation notices,
challenge-response systems, list and bulk mail, our own mail coming back), so that maild never
starts a mail loop or acknowledges a robot. `bounce.parse_report` recognises delivery status
notifications, feedback reports and read receipts, and pulls out what a ticket needs to record:
the failed recipients, the reason and the Message-ID of the message that was reported on.

Both take a stdlib `email.message.Message` parsed from the raw bytes with the compat32 policy,
never raise, and touch no I/O. Below them: `mime`, the defensive MIME and header readers
(shared with the parse stage), and `vocabulary`, the reply prefixes and daemon names
(shared with threading). `authres` reads Authentication-Results. (`limits`, the windowed
limits on automatic mail, does read the database: it is to move out of this package.)
"""
