"""Channels, models, tasks and their outputs (filled in by the gateway issues)."""
