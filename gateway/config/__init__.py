"""The gateway's configuration: typed, frozen settings loaded once from ``config/`` and the environment."""
