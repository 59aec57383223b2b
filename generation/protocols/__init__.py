"""Wire formats of the four text protocols, and translation between them through one internal
form (internal.py). Each protocol module is a codec for both sides of the gateway: what a caller
sends and receives (base.CallerCodec), and what an upstream of that protocol is sent and answers
(base.UpstreamCodec); common.py holds what the codecs share. Pure functions and small state
machines: no I/O, no ORM."""
