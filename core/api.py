"""What every management API router shares (console/api.py mounts them): the paging bounds and
the JSON types of an amount of credits."""

from typing import Annotated

from pydantic import BeforeValidator, WithJsonSchema
from pydantic_core import PydanticCustomError

from core.money import AmountError, to_micros

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
# Keeps OFFSET inside what every database accepts.
MAX_PAGE = 1_000_000

# Money out: credits_json gives an int for whole amounts, else a float with <= 6 decimals.
CreditsOut = int | float


def credits_in(*, allow_zero: bool = True):
    """Credits in, micro-credits out. A JSON number with a fraction arrives as a float;
    to_micros parses its shortest repr as a decimal, so 0.1 means exactly 0.1 credits, not the
    binary 0.1000000000000000055..."""

    def parse(value):
        try:
            return to_micros(value, allow_zero=allow_zero)
        except AmountError as error:
            raise PydanticCustomError("invalid_amount", str(error)) from None

    return Annotated[
        int,
        BeforeValidator(parse),
        WithJsonSchema(
            {
                "anyOf": [
                    {"type": "number", "exclusiveMinimum": 0},
                    {"type": "string", "pattern": r"^\d+(\.\d{1,6})?$"},
                ]
            }
        ),
    ]
