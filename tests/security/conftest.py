"""The security tests start whole clusters like the fault tests do."""

from tests.chaos.conftest import make_cluster  # noqa: F401 (a fixture)
