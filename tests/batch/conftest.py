"""The real stack for the batch suites (tests/gateway/conftest.py)."""

from tests.gateway.conftest import stack

__all__ = ["stack"]
