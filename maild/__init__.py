"""maild: a support mailbox turned into a tiered support desk."""

__version__ = "0.1.0"
