"""gateway.wsframe builds exactly the bytes the websockets library would send for a frame."""

from __future__ import annotations

import pytest
from websockets.frames import Frame, Opcode

from gateway import wsframe

SIZES = [0, 1, 125, 126, 127, 65535, 65536, 70000]


def library(payload: bytes, binary: bool) -> bytes:
    return Frame(Opcode.BINARY if binary else Opcode.TEXT, payload).serialize(mask=False)


@pytest.mark.parametrize("binary", [False, True])
@pytest.mark.parametrize("size", SIZES)
def test_one_frame_is_what_the_library_sends(size: int, binary: bool) -> None:
    payload = (b"x" * size) if not binary else bytes(range(256)) * (size // 256) + bytes(size % 256)
    assert wsframe.header(binary, size) + payload == library(payload, binary)
