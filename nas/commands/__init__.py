"""Handlers of the ``nas`` subcommands (one module per command group)."""
