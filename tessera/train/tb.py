"""A minimal TensorBoard event-file writer for scalars, so logging needs no `tensorboard` package.

An event file is a sequence of TFRecords, each `uint64 length | uint32 masked_crc(length) | data |
uint32 masked_crc(data)` (little endian, CRC-32C), and each record is one `Event` protobuf. We encode
the few protobuf fields we need by hand:

    Event   { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; }
    Summary { repeated Value value = 1; }
    Value   { string tag = 1; float simple_value = 2; }

`tensorboard --logdir RUN/tb` reads the result like any other event file.
"""

from __future__ import annotations

import socket
import struct
import time
from pathlib import Path


def _crc32c_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1  # Castagnoli polynomial, reflected
        table.append(c)
    return table


_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli) of `data`, as TFRecord framing uses."""
    c = 0xFFFFFFFF
    for b in data:
        c = _TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def masked_crc(data: bytes) -> int:
    """TFRecord's masked CRC: rotate right by 15 and add a constant, mod 2^32."""
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # int64 as protobuf encodes it (two's complement for negatives)
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _bytes_field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def scalar_event(tag: str, value: float, step: int, wall_time: float) -> bytes:
    """One serialized `Event` holding one scalar summary."""
    summary_value = _bytes_field(1, tag.encode()) + bytes([2 << 3 | 5]) + struct.pack("<f", value)
    summary = _bytes_field(1, summary_value)
    return (
        bytes([1 << 3 | 1])
        + struct.pack("<d", wall_time)
        + _varint(2 << 3)
        + _varint(step)
        + (_bytes_field(5, summary))
    )


def record(data: bytes) -> bytes:
    """TFRecord framing of one serialized message."""
    header = struct.pack("<Q", len(data))
    return header + struct.pack("<I", masked_crc(header)) + data + struct.pack("<I", masked_crc(data))


def read_records(path: str | Path) -> list[bytes]:
    """The messages of a TFRecord file, checking every CRC (for tests and debugging)."""
    raw, out, i = Path(path).read_bytes(), [], 0
    while i < len(raw):
        header = raw[i : i + 8]
        (n,) = struct.unpack("<Q", header)
        if struct.unpack("<I", raw[i + 8 : i + 12])[0] != masked_crc(header):
            raise ValueError(f"{path}: bad length CRC at byte {i}")
        data = raw[i + 12 : i + 12 + n]
        if struct.unpack("<I", raw[i + 12 + n : i + 16 + n])[0] != masked_crc(data):
            raise ValueError(f"{path}: bad data CRC at byte {i}")
        out.append(data)
        i += 16 + n
    return out


class EventWriter:
    """Appends scalar events to `folder/events.out.tfevents.<time>.<host>`; flushes after each write."""

    def __init__(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        now = time.time()
        self.path = folder / f"events.out.tfevents.{int(now)}.{socket.gethostname()}"
        self._f = open(self.path, "ab")
        version = bytes([1 << 3 | 1]) + struct.pack("<d", now) + _bytes_field(3, b"brain.Event:2")
        self._write(version)

    def _write(self, event: bytes) -> None:
        self._f.write(record(event))
        self._f.flush()

    def scalars(self, values: dict[str, float], step: int) -> None:
        """Write one event per scalar, all at `step`."""
        now = time.time()
        for tag, value in values.items():
            self._write(scalar_event(tag, float(value), step, now))

    def close(self) -> None:
        """Close the file (writes are already flushed)."""
        self._f.close()
