"""Hypothesis strategies for hostile request bodies: a valid body, mutated.

``mutated(valid)`` picks places in a JSON value and breaks them: removes them, gives them the
wrong type, a huge or negative number, a NaN, a string that looks like something else, deep
nesting, strange unicode (lone surrogates included), ``null``, an empty container, extra
fields, repeated elements. ``raw_bodies()`` is what a body can be besides a JSON object: any
JSON, bytes that are not JSON or not UTF-8, JSON extensions Python accepts (``NaN``), nesting
deep enough to exhaust a recursive parser, and the empty body. ``encoded(value)`` serialises a
JSON value the ways a client might.
"""

import copy
import json

from hypothesis import strategies as st

# Values that have broken parsers before: each is a wrong type somewhere.
NASTY_NUMBERS = [
    0, -1, 1, -(2**63), 2**63, 2**64 + 1, 10**30, -(10**30), 2**53 + 1,
    0.5, -0.0, 1e-320, 1e308, -1e308, float("nan"), float("inf"), float("-inf"),
]  # fmt: skip
NASTY_STRINGS = [
    "", " ", "\t\n", "0", "-1", "1e999", "NaN", "Infinity", "null", "true", "[]", "{}",
    "\x00", "\ufeff", "\ud800", "\udfff", "a\ud83dz", "\U0001d573\U0001d58a \U0001f98a",
    "\u202edrow", "e\u0301" * 50,
    "%s%n%x", "'; DROP TABLE x; --", "<script>alert(1)</script>", "../../etc/passwd",
    "data:image/png;base64,!!!", "https://127.0.0.1/", "models/", "task_", "key_",
    "[sandbox:status=500]", "[sandbox:timeout]", "[sandbox:cut]", "[sandbox:tool]",
    "[sandbox:status=429]", "[sandbox:words=300]", "[sandbox:seconds=x]", "[sandbox:fail]",
]  # fmt: skip
# Nesting depths: past Python's recursion limit (1 000), so recursive code over the parsed body
# must not crash; deeper than the json module parses (between 5 000 and 10 000 in Python 3.13).
DEPTHS = [64, 1_000, 5_000, 100_000]
DEEP = DEPTHS[-1]
MAX_BYTES = 4_000_000  # over every body limit, and Django's DATA_UPLOAD_MAX_MEMORY_SIZE

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.sampled_from(NASTY_NUMBERS),
    st.sampled_from(NASTY_STRINGS),
    st.text(max_size=40),
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)


class Deep:
    """``depth`` arrays around ``leaf``. Written out as text by ``encoded``: Python's own json
    and deepcopy would hit the recursion limit on the real thing."""

    def __init__(self, depth: int, leaf):
        self.depth = depth
        self.leaf = leaf

    def __repr__(self):
        return f"Deep({self.depth}, {self.leaf!r})"

    def __deepcopy__(self, memo):
        return self


def _locations(value, path=()):
    """Every place in a JSON value, as a path of keys and indexes; the root is ()."""
    yield path
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _locations(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _locations(child, (*path, index))


def _get(value, path):
    for step in path:
        value = value[step]
    return value


def _set(root, path, new):
    if not path:
        return new
    _get(root, path[:-1])[path[-1]] = new
    return root


def _delete(root, path):
    if path:
        del _get(root, path[:-1])[path[-1]]
    return root


@st.composite
def _mutation(draw, root):
    kind = draw(
        st.sampled_from(
            ["delete", "replace", "nasty", "null", "empty", "wrap", "deep", "extra", "repeat",
             "huge"]
        )
    )  # fmt: skip
    # The root itself only gains fields: a body that is no JSON object is raw_bodies()' part.
    places = [path for path in _locations(root) if path or kind == "extra"]
    if not places:  # an empty object: all there is to do is to add to it
        kind, places = "extra", [()]
    path = draw(st.sampled_from(places))
    current = _get(root, path)
    if kind == "delete":
        return _delete(root, path)
    if kind == "replace":
        return _set(root, path, draw(json_values))
    if kind == "nasty":
        pool = NASTY_STRINGS + NASTY_NUMBERS + [True, False]
        return _set(root, path, draw(st.sampled_from(pool)))
    if kind == "null":
        return _set(root, path, None)
    if kind == "empty":
        return _set(root, path, draw(st.sampled_from([[], {}, ""])))
    if kind == "wrap":
        return _set(root, path, draw(st.sampled_from([[current], {"value": current}])))
    if kind == "deep":
        depth = draw(st.sampled_from(DEPTHS))
        return _set(root, path, Deep(depth, current))
    if kind == "extra" and isinstance(current, dict):
        current[draw(st.text(min_size=1, max_size=20))] = draw(json_values)
        return root
    if kind == "repeat" and isinstance(current, list) and current:
        return _set(root, path, current * draw(st.sampled_from([2, 50, 300])))
    if kind == "huge" and isinstance(current, str):
        size = draw(st.sampled_from([40_000, 1_100_000, 2_700_000]))
        return _set(root, path, current + "x" * size)
    return _set(root, path, draw(scalars))


@st.composite
def mutated(draw, valid, max_mutations: int = 3):
    """``valid`` with one to ``max_mutations`` breakages (or, one time in five, untouched)."""
    body = copy.deepcopy(valid)
    if draw(st.integers(0, 4)) == 0:
        return body
    # Mostly one: each breakage alone is what a fix has to handle, and a body broken in one
    # place gets further into the route than one broken in three.
    count = draw(st.sampled_from([1] * 4 + list(range(2, max_mutations + 1))))
    for _ in range(count):
        before = copy.deepcopy(body)
        body = draw(_mutation(body))
        if len(json.dumps(body, default=repr)) > MAX_BYTES:
            body = before
    return body


@st.composite
def encoded(draw, value) -> bytes:
    """JSON text for a value: compact or spaced, ASCII-escaped or raw UTF-8 (lone surrogates
    then make it invalid UTF-8, as a broken client would send)."""
    ascii_only = draw(st.booleans())
    separators = draw(st.sampled_from([(",", ":"), (", ", ": ")]))
    deep: dict[str, Deep] = {}

    def placeholder(value):
        if not isinstance(value, Deep):
            raise TypeError(value)
        name = f"@@deep{len(deep)}@@"
        deep[name] = value
        return name

    text = json.dumps(value, ensure_ascii=ascii_only, separators=separators, default=placeholder)
    for name, nested in deep.items():
        inner = json.dumps(nested.leaf, ensure_ascii=ascii_only, default=repr)
        text = text.replace(f'"{name}"', "[" * nested.depth + inner + "]" * nested.depth)
    return text.encode("utf-8", "surrogatepass")


RAW_JSONISH = [
    b"", b" ", b"null", b"[]", b"{}", b"0", b'"text"', b"{", b"}", b"{'model': 1}",
    b'{"model": NaN}', b"NaN", b"Infinity", b"-Infinity", b"1e999999", b"\xef\xbb\xbf{}",
    b'{"model": "\xff\xfe"}', b'{"model": "\\ud800"}', b'{"a":1,"a":2}', b"\x00\x01\x02",
    b'{"model": 1}' * 3, b"[" * DEEP + b"]" * DEEP, b'{"a":' * DEEP + b"1" + b"}" * DEEP,
    b"[" * 5_000 + b"]" * 5_000, b"\x1f\x8b\x08\x00", b"<?xml version='1.0'?><a/>",
    b"model=gpt-4.1&messages=hi",
]  # fmt: skip


def raw_bodies():
    """Bodies that are not a JSON object: other JSON, not JSON, not UTF-8, too deep."""
    return st.one_of(
        st.sampled_from(RAW_JSONISH),
        st.binary(max_size=64),
        json_values.flatmap(encoded),
    )
