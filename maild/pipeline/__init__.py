"""The per-message stages: parse, guard, thread, classify, persist, respond."""
