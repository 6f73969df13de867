"""The hostile-backend tests run against the same real stack as tests/gateway."""

from tests.gateway.conftest import stack  # noqa: F401
