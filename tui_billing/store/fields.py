"""Exact decimal columns stored as scaled integers.

SQLite's NUMERIC affinity turns '12.30' into a float, so no amount is ever
stored as a decimal column: each is an integer count of 10**-scale units,
which both SQLite and PostgreSQL keep exactly and can SUM exactly.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, overload

from peewee import BigIntegerField

MONEY_SCALE = 4  # 1/10,000ths: exact for every ISO 4217 minor unit
QUANTITY_SCALE = 3  # seed 001: quantity up to three decimal places


class ScaledDecimalField(BigIntegerField):
    def __init__(self, scale: int = MONEY_SCALE, *args: Any, **kwargs: Any) -> None:
        self.scale = scale
        super().__init__(*args, **kwargs)

    def db_value(self, value: Any) -> int | None:
        if value is None:
            return None
        if isinstance(value, float):
            raise TypeError(f"{self.name}: float given for an exact decimal column")
        scaled = Decimal(value).scaleb(self.scale)
        if scaled != scaled.to_integral_value():
            raise ValueError(f"{self.name}: {value} has more than {self.scale} decimal places")
        return int(scaled)

    def db_values(self, values: list[Any]) -> list[int | None]:
        """db_value of each, a column at a time (bulk writes: the bill run writes
        four amounts a charge line)."""
        out: list[int | None] = []
        append, scale = out.append, self.scale
        for value in values:
            if value is None:
                append(None)
                continue
            if type(value) is not Decimal:
                if isinstance(value, float):
                    raise TypeError(f"{self.name}: float given for an exact decimal column")
                value = Decimal(value)
            scaled = value.scaleb(scale)
            whole = int(scaled)
            if scaled != whole:
                raise ValueError(f"{self.name}: {value} has more than {scale} decimal places")
            append(whole)
        return out

    @overload
    def python_value(self, value: None) -> None: ...
    @overload
    def python_value(self, value: int | str | Decimal) -> Decimal: ...
    def python_value(self, value: Any) -> Decimal | None:
        if value is None:
            return None
        return Decimal(int(value)).scaleb(-self.scale)


class MoneyField(ScaledDecimalField):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(MONEY_SCALE, *args, **kwargs)


class QuantityField(ScaledDecimalField):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(QUANTITY_SCALE, *args, **kwargs)
