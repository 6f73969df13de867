"""Who is calling and may they call now: client assertions, replay, rate limits, mutual TLS, roles."""
