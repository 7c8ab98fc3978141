"""Checks on safetensors files for the process-level tests; standard library only.

  cosine FILE KEY REF REF_KEY MIN [MODEL]
      the rows of FILE's tensor KEY against REF's REF_KEY: same count, worst
      cosine >= MIN, and (with MODEL) FILE's metadata "model" == MODEL. Prints
      "N rows, worst cosine C"; on failure says why on stderr and exits 1.
  equal FILE KEY REF REF_KEY
      the two tensors have the same shape and values; exits 1 otherwise.
"""
import json
import math
import struct
import sys


def read(path):
    """{name: (shape, values)} plus '__metadata__': {...}."""
    b = open(path, 'rb').read()
    n = struct.unpack('<Q', b[:8])[0]
    h = json.loads(b[8:8 + n])
    out = {'__metadata__': h.pop('__metadata__', {})}
    for k, v in h.items():
        s, e = v['data_offsets']
        raw = b[8 + n + s:8 + n + e]
        fmt = {'F32': 'f', 'I32': 'i', 'F16': 'e'}[v['dtype']]
        out[k] = (v['shape'], list(struct.unpack('<%d%s' % (len(raw) // struct.calcsize(fmt), fmt), raw)))
    return out


def rows(t):
    shape, vals = t
    d = shape[-1]
    return [vals[i:i + d] for i in range(0, len(vals), d)]


def cos(a, b):
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def main(cmd, args):
    if cmd == 'cosine' and len(args) in (5, 6):
        f = read(args[0])
        a = rows(f[args[1]])
        b = rows(read(args[2])[args[3]])
        if len(a) != len(b):
            sys.exit('rows: %d vs %d' % (len(a), len(b)))
        if len(args) == 6 and f['__metadata__'].get('model') != args[5]:
            sys.exit('metadata: %s, want model %s' % (f['__metadata__'], args[5]))
        worst = min(cos(x, y) for x, y in zip(a, b))
        if worst < float(args[4]):
            sys.exit('%d rows, worst cosine %.7f < %s' % (len(a), worst, args[4]))
        print('%d rows, worst cosine %.7f' % (len(a), worst))
    elif cmd == 'equal' and len(args) == 4:
        if read(args[0])[args[1]] != read(args[2])[args[3]]:
            sys.exit('%s:%s differs from %s:%s' % tuple(args))
    else:
        sys.exit(__doc__)


if __name__ == '__main__':
    main(sys.argv[1] if len(sys.argv) > 1 else '', sys.argv[2:])
