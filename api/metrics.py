"""The API process's own metrics in the Prometheus text format (names start with ``bobbin_``)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    def __init__(self) -> None:
        self._requests: Counter[tuple[str, int]] = Counter()
        self._gauges: dict[str, tuple[str, Callable[[], float]]] = {}

    def count_request(self, method: str, status: int) -> None:
        self._requests[(method, status)] += 1

    def gauge(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        """Report ``read()`` under ``name`` at each scrape."""
        self._gauges[name] = (help_text, read)

    def render(self) -> str:
        lines = [
            "# HELP bobbin_api_requests_total HTTP requests answered, by method and status.",
            "# TYPE bobbin_api_requests_total counter",
        ]
        for (method, status), count in sorted(self._requests.items()):
            lines.append(
                f'bobbin_api_requests_total{{method="{method}",status="{status}"}} {count}'
            )
        for name, (help_text, read) in sorted(self._gauges.items()):
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {read()}"]
        return "\n".join(lines) + "\n"
