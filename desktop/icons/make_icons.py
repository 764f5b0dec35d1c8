#!/usr/bin/env python3
"""Draws Tradecast's icons (RGBA PNGs, and an ICO holding PNGs) with the standard library only.

The mark: a rounded square in Tradecast blue with three rising candles; the
tray variants add a status dot (green: all links up, amber: EA link down or standalone, red:
drawdown lock). Run `python3 desktop/icons/make_icons.py` to rewrite every file in this folder.
"""
import math
import os
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
SS = 4  # supersampling per axis, for smooth edges


def png(path, w, h, pixels):
    raw = b"".join(b"\x00" + bytes(pixels[y * w * 4:(y + 1) * w * 4]) for y in range(h))

    def chunk(kind, data):
        c = struct.pack(">I", len(data)) + kind + data
        return c + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 6, 0, 0, 0))
    data += chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(data)
    return data


def inside_rounded(x, y, x0, y0, x1, y1, r):
    cx = min(max(x, x0 + r), x1 - r)
    cy = min(max(y, y0 + r), y1 - r)
    return (x - cx) ** 2 + (y - cy) ** 2 <= r * r


BLUE_TOP = (37, 99, 235)
BLUE_BOTTOM = (30, 64, 175)
WHITE = (255, 255, 255)
DOTS = {"ok": (34, 197, 94), "warn": (245, 158, 11), "alert": (239, 68, 68)}


def shade(u, v, dot):
    """Colour (r, g, b, a) at unit coordinates (u, v) in [0, 1)."""
    if dot is not None:
        r = 0.23
        cx, cy = 1 - r - 0.01, 1 - r - 0.01
        d = math.hypot(u - cx, v - cy)
        if d <= r:
            return (*(WHITE if d > r - 0.05 else DOTS[dot]), 255)
    if not inside_rounded(u, v, 0.04, 0.04, 0.96, 0.96, 0.2):
        return (0, 0, 0, 0)
    t = v
    base = tuple(int(a + (b - a) * t) for a, b in zip(BLUE_TOP, BLUE_BOTTOM))
    # Three rising candles: (centre x, body top, body bottom, wick top, wick bottom).
    candles = [(0.30, 0.55, 0.74, 0.48, 0.80), (0.50, 0.42, 0.62, 0.34, 0.70), (0.70, 0.27, 0.50, 0.20, 0.58)]
    for cx, bt, bb, wt, wb in candles:
        if abs(u - cx) <= 0.065 and bt <= v <= bb:
            return (*WHITE, 255)
        if abs(u - cx) <= 0.018 and wt <= v <= wb:
            return (*WHITE, 255)
    return (*base, 255)


def render(size, dot=None):
    px = bytearray(size * size * 4)
    for y in range(size):
        for x in range(size):
            acc = [0, 0, 0, 0]
            for sy in range(SS):
                for sx in range(SS):
                    c = shade((x + (sx + 0.5) / SS) / size, (y + (sy + 0.5) / SS) / size, dot)
                    a = c[3]
                    acc[0] += c[0] * a
                    acc[1] += c[1] * a
                    acc[2] += c[2] * a
                    acc[3] += a
            n = SS * SS
            a = acc[3] / n
            i = (y * size + x) * 4
            if acc[3]:
                px[i:i + 4] = bytes((round(acc[0] / acc[3]), round(acc[1] / acc[3]), round(acc[2] / acc[3]), round(a)))
    return px


def main():
    pngs = {}
    for name, size in [("32x32.png", 32), ("64x64.png", 64), ("128x128.png", 128), ("128x128@2x.png", 256), ("icon.png", 512)]:
        pngs[size] = png(os.path.join(HERE, name), size, size, render(size))
    for dot in DOTS:
        png(os.path.join(HERE, f"tray-{dot}.png"), 64, 64, render(64, dot))
    # ICO: a directory of PNG images (Windows Vista and later read PNG entries).
    sizes = [32, 64, 128, 256]
    header = struct.pack("<HHH", 0, 1, len(sizes))
    offset = 6 + 16 * len(sizes)
    entries, blobs = b"", b""
    for s in sizes:
        blob = pngs[s]
        entries += struct.pack("<BBBBHHII", s % 256, s % 256, 0, 0, 1, 32, len(blob), offset)
        blobs += blob
        offset += len(blob)
    with open(os.path.join(HERE, "icon.ico"), "wb") as f:
        f.write(header + entries + blobs)


if __name__ == "__main__":
    main()
