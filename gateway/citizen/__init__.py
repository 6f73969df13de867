"""Citizens see who accessed their data: ``GET /v1/citizen/access-log`` (docs/citizens.md).

``jwks`` reads the identity provider's public keys from disk; ``token`` verifies a citizen's token against
them; ``devidp`` is the development identity provider (a key pair under the state directory, and the
tokens ``anss-gateway citizen token`` mints); ``labels`` holds the French and English texts; ``view`` turns
access-log entries into what a citizen is shown (and decides what is never shown); ``pages`` walks the
log for one citizen, newest first, a page at a time. The handler is ``gateway/api/citizen.py``.

This module imports nothing, so ``gateway.config.settings`` and the rest can import its parts without cycles.
"""
