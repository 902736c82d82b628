"""Draw the wallet's app icons (pwa/static/icons/*.png) with no image library.

Run once after changing the design: `uv run python docs/make_wallet_icons.py`.
The icons are committed; this script is how they were made. A ring (Kring)
in white on the wallet's theme colour, anti-aliased by exact pixel coverage
of the edges. The maskable icon fills the whole square and keeps the ring
inside the central safe zone (a circle of 40% of the size in radius), so
any launcher mask leaves it whole.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

ICONS_DIR = Path(__file__).resolve().parents[1] / "pwa" / "static" / "icons"
THEME = (0x0B, 0x5D, 0x5B)
RING = (0xFF, 0xFF, 0xFF)
ACCENT = (0xF2, 0xB7, 0x05)


def _clamp(value: float) -> float:
    return 0.0 if value < 0 else 1.0 if value > 1 else value


def _png(size: int, pixels: bytearray) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + bytes(pixels[y * size * 4 : (y + 1) * size * 4]) for y in range(size))
    header = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)  # 8-bit RGBA
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows, 9))
        + chunk(b"IEND", b"")
    )


def icon(size: int, *, maskable: bool) -> bytes:
    centre = size / 2
    # Outer and inner ring radii and the corner radius, as fractions of the size.
    outer, inner = (0.30, 0.185) if maskable else (0.34, 0.21)
    r_out, r_in = outer * size, inner * size
    corner = 0.0 if maskable else 0.22 * size
    dot_r, dot_x, dot_y = 0.075 * size, centre + r_out * 0.72, centre - r_out * 0.72
    pixels = bytearray(size * size * 4)
    for y in range(size):
        py = y + 0.5
        for x in range(size):
            px = x + 0.5
            # Background: the square, with rounded corners unless maskable.
            cx = min(max(px, corner), size - corner)
            cy = min(max(py, corner), size - corner)
            if corner:
                edge = corner - ((px - cx) ** 2 + (py - cy) ** 2) ** 0.5
                alpha = _clamp(edge + 0.5)
            else:
                alpha = 1.0
            d = ((px - centre) ** 2 + (py - centre) ** 2) ** 0.5
            ring = _clamp(r_out - d + 0.5) * _clamp(d - r_in + 0.5)
            dot = _clamp(dot_r - ((px - dot_x) ** 2 + (py - dot_y) ** 2) ** 0.5 + 0.5)
            colour = [THEME[i] + (RING[i] - THEME[i]) * ring for i in range(3)]
            colour = [colour[i] + (ACCENT[i] - colour[i]) * dot for i in range(3)]
            offset = (y * size + x) * 4
            pixels[offset : offset + 4] = bytes(
                [round(colour[0]), round(colour[1]), round(colour[2]), round(255 * alpha)]
            )
    return _png(size, pixels)


def main() -> None:
    ICONS_DIR.mkdir(parents=True, exist_ok=True)
    for name, size, maskable in (
        ("icon-192.png", 192, False),
        ("icon-512.png", 512, False),
        ("icon-maskable-512.png", 512, True),
    ):
        (ICONS_DIR / name).write_bytes(icon(size, maskable=maskable))
        print(ICONS_DIR / name)


if __name__ == "__main__":
    main()
