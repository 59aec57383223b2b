"""Tags a caller attaches to a call, for attributing its spend (`X-ByteSpike-Tags:
team=search,env=prod`, and the protocols' own fields: OpenAI's `metadata` and `user`, Anthropic's
`metadata.user_id`). A tag is ``key=value``, both ``[A-Za-z0-9_.-]{1,64}``; a call carries at
most ten. Reports name a tag ``key:value`` in their filters (`tag=team:search`).

The header is ours, so a malformed tag in it is the caller's mistake and a 400 that names it.
The protocols' fields are not: they have their own meaning upstream (an OpenAI `user` is often
an e-mail address), so their entries become tags only when they fit, and never refuse a call."""

import re

from core.errors import ApiError

HEADER = "X-ByteSpike-Tags"
MAX_TAGS = 10
_PART = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def _fits(part: str) -> bool:
    return _PART.fullmatch(part) is not None


def invalid_tag(tag: str, why: str) -> ApiError:
    return ApiError(400, "invalid_tag", f"Invalid tag '{tag[:140]}': {why}", "tags")


def _parse_header(header: str) -> dict[str, str]:
    tags: dict[str, str] = {}
    for raw in header.split(","):
        tag = raw.strip()
        if not tag:
            continue
        key, separator, value = tag.partition("=")
        if not separator:
            raise invalid_tag(tag, "write it as key=value.")
        key, value = key.strip(), value.strip()
        if not _fits(key) or not _fits(value):
            raise invalid_tag(tag, "keys and values are 1 to 64 letters, digits, '_', '.' or '-'.")
        if key in tags and tags[key] != value:
            raise invalid_tag(tag, f"the key '{key}' is given twice.")
        tags[key] = value
    if len(tags) > MAX_TAGS:
        raise ApiError(
            400,
            "invalid_tag",
            f"A call carries at most {MAX_TAGS} tags; {len(tags)} given.",
            "tags",
        )
    return tags


def call_tags(header: str | None, *, metadata=None, user: str = "") -> tuple[str, ...]:
    """The call's tags as sorted ``key=value`` strings: the header's (validated, else a 400), then
    the protocol's `metadata` entries and `user` that fit, while there is room for them."""
    tags = _parse_header(header) if header else {}
    extra = dict(metadata) if isinstance(metadata, dict) else {}
    if user:
        extra.setdefault("user", user)
    for key, value in extra.items():
        if len(tags) >= MAX_TAGS:
            break
        if key not in tags and isinstance(value, str) and _fits(key) and _fits(value):
            tags[key] = value
    return tuple(sorted(f"{key}={value}" for key, value in tags.items()))


def tag_filter(raw: str) -> str:
    """A report's ``tag=key:value`` filter as the stored ``key=value``; a 400 when malformed."""
    key, separator, value = raw.partition(":")
    if not separator or not _fits(key) or not _fits(value):
        raise ApiError(
            400,
            "invalid_param",
            f"tag must be key:value, such as team:search; got '{raw[:140]}'.",
            "tag",
        )
    return f"{key}={value}"
