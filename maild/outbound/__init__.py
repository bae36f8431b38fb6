"""Outbound mail: signed Message-IDs, sandboxed templates, header-safe composition, outbox."""
