"""Generated video bytes that any party can reproduce from (vid, version, size) without storing them.

Each 64 KiB block starts with its own index and the video's identity, so a part written at the wrong offset,
twice, or from another video is caught by a byte-for-byte comparison; the rest of the block comes from a
1 MiB pseudo-random pattern seeded by the vid. Generation is a few memcpy's per MiB, so the source is never
the bottleneck of a benchmark.
"""

from __future__ import annotations

import hashlib
import random
import struct
from collections.abc import Iterator
from functools import lru_cache

BLOCK = 64 * 1024
_PATTERN_SIZE = 1024 * 1024
_HEADER = struct.Struct(">QQ")


@lru_cache(maxsize=64)
def _pattern(vid: str) -> bytes:
    seed = int.from_bytes(hashlib.sha256(vid.encode()).digest()[:8], "big")
    return random.Random(seed).randbytes(_PATTERN_SIZE + BLOCK)


class VideoContent:
    def __init__(self, vid: str, size: int, version: int = 0) -> None:
        self.vid, self.size, self.version = vid, size, version
        self._pattern = _pattern(vid)
        self._identity = int.from_bytes(hashlib.sha256(f"{vid}#{version}".encode()).digest()[:8], "big")

    def _block(self, index: int) -> bytes:
        offset = (index * 4099) % _PATTERN_SIZE  # a prime stride: neighbouring blocks differ
        return _HEADER.pack(index, self._identity) + self._pattern[offset + _HEADER.size : offset + BLOCK]

    def iter_range(self, start: int = 0, end: int | None = None, chunk: int = 1024 * 1024) -> Iterator[bytes]:
        """Bytes [start, end) in pieces of about ``chunk`` bytes."""
        end = self.size if end is None else min(end, self.size)
        position = start
        while position < end:
            stop = min(end, position + chunk)
            first, last = position // BLOCK, (stop - 1) // BLOCK
            data = b"".join(self._block(i) for i in range(first, last + 1))
            skip = position - first * BLOCK
            yield data[skip : skip + (stop - position)]
            position = stop

    def read(self, start: int = 0, end: int | None = None) -> bytes:
        return b"".join(self.iter_range(start, end))

    def sha256(self) -> str:
        digest = hashlib.sha256()
        for piece in self.iter_range():
            digest.update(piece)
        return digest.hexdigest()

    @property
    def etag(self) -> str:
        return f'"{self._identity:016x}-{self.size}"'
