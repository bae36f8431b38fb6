"""Routing rules and the support organisation, from YAML: schema, loader, engine."""
