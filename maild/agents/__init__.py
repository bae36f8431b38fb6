"""Agents work by email: notifications, relayed replies, internal notes and commands."""
