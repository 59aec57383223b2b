"""What every management API router shares (console/api.py mounts them): the paging bounds and
the JSON type of an amount of credits."""

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
# Keeps OFFSET inside what every database accepts.
MAX_PAGE = 1_000_000

# Money out: credits_json gives an int for whole amounts, else a float with <= 6 decimals.
CreditsOut = int | float
