# A 6000 x 6000 RGB PNG (36 MP) for bench/decode_budget.sh: a smooth
# gradient, so the file is small (130 KB) but decoding it needs its full
# pixel buffers.
import struct, sys, zlib
w = h = 6000
def chunk(t, d): return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
rows = bytearray()
row_tail = bytes([1, 1, 1]) * (w - 1)  # filter 1 (Sub): each pixel = left + 1
for y in range(h):
    rows += bytes([1, y % 256, (y // 2) % 256, (y // 3) % 256]) + row_tail
png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) + \
      chunk(b"IDAT", zlib.compress(bytes(rows), 9)) + chunk(b"IEND", b"")
open(sys.argv[1], "wb").write(png)
print(len(png), "bytes")
