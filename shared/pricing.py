"""What model calls cost: usage at the model's prices, in nano-dollars.

Amounts are integers of nano-dollars (1e-9 USD), so sums are exact on every
database and in every process; the API shows them as decimal strings of
dollars (``"0.000415"``). A model with no known price costs ``None``, never 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from shared.llm import ModelInfo

NANOS_PER_USD = 1_000_000_000
_NANOS_PER_TOKEN_PER_USD_PER_MTOK = NANOS_PER_USD // 1_000_000  # 1 USD/Mtok = 1000 nanos/token


def cost_nanos(model: ModelInfo, input_tokens: int, output_tokens: int) -> int | None:
    """The cost of a call at the model's prices; None when it has none."""
    if model.cost_per_mtok_in is None or model.cost_per_mtok_out is None:
        return None
    per_token = _NANOS_PER_TOKEN_PER_USD_PER_MTOK
    return round(
        input_tokens * model.cost_per_mtok_in * per_token
        + output_tokens * model.cost_per_mtok_out * per_token
    )


def usd(nanos: int) -> str:
    """Nano-dollars as a decimal string of dollars, without trailing zeros ("0.000415")."""
    text = format(Decimal(nanos) / NANOS_PER_USD, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def nanos_of(amount: str) -> int:
    """A decimal string of dollars as nano-dollars (rounded to the nearest)."""
    return round(Decimal(amount) * NANOS_PER_USD)


@dataclass
class Usage:
    """A turn's usage so far: tokens, their cost, and whether Bobbin counted any itself."""

    input_tokens: int = 0
    output_tokens: int = 0
    cost_nanos: int | None = 0  # None once a call had no known price
    estimated: bool = False

    @classmethod
    def of(cls, stored: dict[str, Any] | None) -> Usage:
        """The usage a turn's row holds (as ``as_dict`` wrote it)."""
        stored = stored or {}
        return cls(
            input_tokens=stored.get("input_tokens", 0),
            output_tokens=stored.get("output_tokens", 0),
            cost_nanos=stored.get("cost_nanos") if stored else 0,
            estimated=stored.get("estimated", False),
        )

    def add(self, input_tokens: int, output_tokens: int, cost: int | None, estimated: bool) -> None:
        self.input_tokens += input_tokens
        self.output_tokens += output_tokens
        self.cost_nanos = (
            None if cost is None or self.cost_nanos is None else self.cost_nanos + cost
        )
        self.estimated = self.estimated or estimated

    def shown(self) -> dict[str, Any]:
        """As the API shows it (a turn's ``usage``, ``turn_completed``'s ``data.usage``)."""
        return shown_usage(self.as_dict())

    def as_dict(self) -> dict[str, Any]:
        """What the turn's row and its closing event keep (``cost_nanos`` absent: no price)."""
        stored: dict[str, Any] = {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "estimated": self.estimated,
        }
        if self.cost_nanos is not None:
            stored["cost_nanos"] = self.cost_nanos
        return stored


def shown_usage(stored: dict[str, Any]) -> dict[str, Any]:
    """Stored usage as the API shows it: ``cost_usd`` a decimal string, or None unpriced."""
    nanos = stored.get("cost_nanos")
    return {
        "input_tokens": stored.get("input_tokens", 0),
        "output_tokens": stored.get("output_tokens", 0),
        "cost_usd": usd(nanos) if nanos is not None else None,
        "estimated": stored.get("estimated", False),
    }
