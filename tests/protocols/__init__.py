"""Protocol codec tests (pure functions, no database), and the helpers they share."""

from generation.protocols.base import SSE


def parse_sse(frames: list[bytes]) -> list[SSE]:
    """Rendered SSE frames back into events, as a client reads them off the wire."""
    events = []
    for block in b"".join(frames).decode().split("\n\n"):
        if not block:
            continue
        event, data = "", []
        for line in block.split("\n"):
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)
        events.append(SSE(data="\n".join(data), event=event))
    return events


def pieces(text: str, size: int = 3) -> list[str]:
    """``text`` cut into fragments of ``size`` characters, as streams deliver it."""
    return [text[i : i + size] for i in range(0, len(text), size)]
