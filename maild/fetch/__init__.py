"""Sources of inbound mail."""
