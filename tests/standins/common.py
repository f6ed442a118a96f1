"""Checks shared by the nodetool and sstableloader stand-ins (tests only; see README.md)."""
import hashlib
import json
import os
import re
import sys
import zlib

SSTABLE = re.compile(r'^(?:[a-z]{2}-[^-]+-(?:big|bti)-|[^-]+-[^-]+-[a-z]{2}-\d+-)([A-Za-z0-9.]+)$')


def fail(msg):
    print(f'ERROR {msg}', flush=True)
    sys.exit(1)


def log(env, record):
    path = os.environ.get(env)
    if path:
        with open(path, 'a') as f:
            f.write(json.dumps(record) + '\n')


def sstable_problems(d):
    """Problems with the sstables in directory d (not its subdirectories): every component its
    TOC.txt lists present, Data.db matching Digest.crc32, no half-copied temp files."""
    problems = []
    names = sorted(n for n in os.listdir(d) if os.path.isfile(os.path.join(d, n)))
    for n in names:
        if n.startswith('.') or n.startswith('tmp'):
            problems.append(f'{d}/{n}: a temporary file in the table directory')
    for n in names:
        m = SSTABLE.match(n)
        if not m or m.group(1) != 'TOC.txt':
            continue
        prefix = n[:-len('TOC.txt')]
        for comp in open(os.path.join(d, n)).read().split():
            if not os.path.exists(os.path.join(d, prefix + comp)):
                problems.append(f'{d}/{prefix}{comp}: listed in {n} but missing')
        dig = os.path.join(d, prefix + 'Digest.crc32')
        data = os.path.join(d, prefix + 'Data.db')
        if os.path.exists(dig) and os.path.exists(data):
            crc = 0
            with open(data, 'rb') as f:
                for b in iter(lambda: f.read(1 << 20), b''):
                    crc = zlib.crc32(b, crc)
            if str(crc) != open(dig).read().strip():
                problems.append(f'{data}: CRC32 {crc} does not match {prefix}Digest.crc32')
    return problems


def sha256(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for b in iter(lambda: f.read(1 << 20), b''):
            h.update(b)
    return h.hexdigest()


def inherited_fds():
    """Descriptors above 2 this process was started with ("fd -> target"): a program cassbackup
    starts must inherit only stdin, stdout and stderr (everything else is opened O_CLOEXEC)."""
    fds = []
    for n in os.listdir('/proc/self/fd'):
        if int(n) <= 2:
            continue
        try:
            fds.append(f'{n} -> {os.readlink(f"/proc/self/fd/{n}")}')
        except OSError:
            pass  # the descriptor listdir used, closed by now
    return sorted(fds)
