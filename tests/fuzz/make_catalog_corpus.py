#!/usr/bin/python3
"""Writes the seed inputs of fuzz_catalog (tests/fuzz/corpus/catalog/), in the encoding that
fuzz_catalog.c describes: a sound backup, and the same with one hostile row each. Run it again
after changing the encoding:  /usr/bin/python3 tests/fuzz/make_catalog_corpus.py"""
import os
import struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'corpus', 'catalog')
PACKS, BLOBS, BLOB_LOCS, BACKUPS, KEYSPACES, TABLES, DIRS, FILES = range(8)


def i64(v):
    return bytes([1]) + struct.pack('<Q', v & (2**64 - 1))  # wraps, as a damaged row may


def text(s):
    b = s.encode('utf-8', 'surrogateescape') if isinstance(s, str) else s
    return bytes([3, len(b)]) + b


def blob(b):
    return bytes([4, len(b)]) + b


NULL = bytes([5])
SHA = bytes(range(32))


def row(table, *values):
    return bytes([table]) + b''.join(values)


def sound(name='day1', ks='shop', table='orders', fname='nb-1-big-Data.db', size=100, offset=512,
          pack_path='packs/ab/0123.tar.zst', dir_name='.orders_idx', pack_id=1, parent=1):
    return b''.join([
        row(PACKS, i64(1), text(pack_path), i64(4096), i64(1), i64(1), blob(SHA), i64(2048), i64(100)),
        row(BLOBS, i64(1), blob(SHA), i64(size), i64(pack_id), i64(offset)),
        row(BLOB_LOCS, i64(1), i64(1), i64(offset)),
        row(BACKUPS, i64(1), text(name), text('c'), text('dc1'), text('n1'), text(''), text('snap'),
            i64(1_700_000_000_000_000_000), i64(2), i64(size * 2), i64(size), i64(4096), text('4.1'),
            text(''), i64(0o755), i64(0), i64(0), i64(900)),
        row(KEYSPACES, i64(1), i64(parent), text(ks), i64(0o755), i64(0), i64(0), i64(1)),
        row(TABLES, i64(1), i64(1), i64(parent), text(table), text('0123456789abcdef0123456789abcdef'),
            NULL, i64(0o755), i64(0), i64(0), i64(1)),
        row(DIRS, i64(1), i64(1), text(dir_name), i64(0o755), i64(0), i64(0), i64(1)),
        row(FILES, i64(1), i64(1), i64(1), i64(0), text(fname), i64(size), i64(0o644), i64(0), i64(0),
            i64(1), i64(1)),
        row(FILES, i64(2), i64(1), i64(1), i64(1), text(fname), i64(size), i64(0o644), i64(0), i64(0),
            i64(1), i64(1)),
    ])


SEEDS = {
    'sound': sound(),
    'dotdot-backup': sound(name='..'),
    'slash-keyspace': sound(ks='a/b'),
    'absolute-table': sound(table='/etc'),
    'dotdot-file': sound(fname='..'),
    'nul-in-name': sound(fname=b'ab\0cd'),
    'blob-name': sound() + row(BACKUPS, i64(2), blob(b'day2'), text('c'), text('dc1'), text('n1'),
                               text(''), text('s'), i64(5), i64(0), i64(0), i64(0), i64(0), text(''),
                               text(''), i64(0), i64(0), i64(0), i64(1)),
    'bad-utf8': sound(ks=b'\xff\xfe'),
    'negative-size': sound(size=-1),
    'huge-size': sound(size=1 << 62),
    'negative-offset': sound(offset=-512),
    'pack-path-dotdot': sound(pack_path='packs/../../etc/passwd'),
    'pack-path-absolute': sound(pack_path='/etc/passwd'),
    'missing-pack': sound(pack_id=99),
    'huge-pack-id': sound(pack_id=(1 << 63) - 1),
    'missing-parent': sound(parent=42),
    'dir-not-dot': sound(dir_name='idx'),
    'cycle': sound() + row(TABLES, i64(2), i64(1), i64(2), text('t2'), text(''), NULL, i64(0o755),
                           i64(0), i64(0), i64(1))
                     + row(DIRS, i64(2), i64(2), text('.d'), i64(0), i64(0), i64(0), i64(0))
                     + row(FILES, i64(3), i64(1), i64(2), i64(2), text('f'), i64(0), i64(0), i64(0),
                           i64(0), i64(0), i64(1)),
    'text-in-int-columns': sound() + row(FILES, i64(4), text('1'), text('1'), text('x'), text('g'),
                                         text('100'), text('rw'), NULL, NULL, NULL, text('1')),
    'dir-file-same-name': sound(fname='.orders_idx'),
}


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(OUT, name), 'wb') as f:
            f.write(data)
    print(f'{len(SEEDS)} seeds in {OUT}')


if __name__ == '__main__':
    main()
