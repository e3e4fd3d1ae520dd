"""WebSocket frames as a server writes them (RFC 6455 §5.2), without I/O.

A server's frames are never masked, so without per-message compression the complete
frame of a message is the same bytes for every client: the fan-out frames a channel
message once and writes that very `bytes` object to each subscriber's transport.
Frames here are always final (FIN set): the hub never fragments a message.
"""

from __future__ import annotations

import struct

TEXT = 0x1
BINARY = 0x2

_FIN = 0x80
_SHORT = struct.Struct("!BB")
_MEDIUM = struct.Struct("!BBH")
_LONG = struct.Struct("!BBQ")


def frame(payload: bytes, opcode: int) -> bytes:
    """The complete frame carrying `payload` (the header, then the payload itself)."""
    size = len(payload)
    first = _FIN | opcode
    if size < 126:
        header = _SHORT.pack(first, size)
    elif size < 65_536:
        header = _MEDIUM.pack(first, 126, size)
    else:
        header = _LONG.pack(first, 127, size)
    return header + payload
