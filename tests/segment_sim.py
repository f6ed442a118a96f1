"""Commitlog segments as Cassandra writes them, for the tests and bench/commitlog.py.

The header is CommitLogDescriptor.writeHeader's: int32 version, int64 id, uint16 parameters
length, the parameters, then CRC32 of the version, the id's low and high ints, the length and
the parameters; big-endian."""
import os
import struct
import zlib


def segment(version, seg_id, body=b'', params=b'{}'):
    """A commitlog segment's bytes: Cassandra's header, then body."""
    crc = zlib.crc32(struct.pack('>I', version))
    crc = zlib.crc32(struct.pack('>I', seg_id & 0xffffffff), crc)
    crc = zlib.crc32(struct.pack('>I', seg_id >> 32), crc)
    crc = zlib.crc32(struct.pack('>I', len(params)), crc)
    crc = zlib.crc32(params, crc)
    return struct.pack('>iqH', version, seg_id, len(params)) + params + struct.pack('>I', crc) + body


def write_segment(d, seg_id, version=7, size=1 << 20, seed=0):
    """CommitLog-<version>-<id>.log in d: a header, some mutations' worth of bytes, zeros (a
    segment is preallocated). Returns its path."""
    os.makedirs(d, exist_ok=True)
    body = bytes((seed * 7 + i * 13) % 251 for i in range(4096)) * 4
    data = segment(version, seg_id, body)
    data += bytes(max(0, size - len(data)))
    path = os.path.join(d, f'CommitLog-{version}-{seg_id}.log')
    with open(path, 'wb') as f:
        f.write(data)
    return path
