#!/usr/bin/env python3
"""A directory read as a stream while it changes, through libc's opendir/readdir/telldir/seekdir/rewinddir
(ctypes), as programs do. Prints one JSON object: the names of each pass, so two mounts can be compared.

  dirstream.py DIR FIRST ADD REMOVE
    pass 1: read FIRST entries, telldir; then create ADD new files (new-N) and unlink REMOVE of the
            names not read yet (in listing order); then read on to the end
    pass 2: seekdir to the saved position, read to the end
    pass 3: rewinddir, read everything
Each entry is "name:d_ino:d_type". Exit 0, or 2 with the error.
"""
import ctypes
import ctypes.util
import json
import os
import sys


class Dirent(ctypes.Structure):
    _fields_ = [('d_ino', ctypes.c_uint64), ('d_off', ctypes.c_int64), ('d_reclen', ctypes.c_ushort),
                ('d_type', ctypes.c_ubyte), ('d_name', ctypes.c_char * 256)]


libc = ctypes.CDLL(ctypes.util.find_library('c'), use_errno=True)
libc.opendir.restype = ctypes.c_void_p
libc.opendir.argtypes = [ctypes.c_char_p]
libc.readdir64.restype = ctypes.POINTER(Dirent)
libc.readdir64.argtypes = [ctypes.c_void_p]
libc.telldir.restype = ctypes.c_long
libc.telldir.argtypes = [ctypes.c_void_p]
libc.seekdir.argtypes = [ctypes.c_void_p, ctypes.c_long]
libc.rewinddir.argtypes = [ctypes.c_void_p]
libc.closedir.argtypes = [ctypes.c_void_p]


def read(d, limit=None):
    out = []
    while limit is None or len(out) < limit:
        ctypes.set_errno(0)
        e = libc.readdir64(d)
        if not e:
            if ctypes.get_errno():
                raise OSError(ctypes.get_errno(), 'readdir')
            break
        x = e.contents
        name = x.d_name.decode('latin1')
        out.append(f'{name}:{x.d_ino}:{x.d_type}')
    return out


def main():
    path, first, add, remove = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    d = libc.opendir(path.encode())
    if not d:
        raise OSError(ctypes.get_errno(), 'opendir')
    try:
        head = read(d, first)
        pos = libc.telldir(d)
        seen = {e.split(':')[0] for e in head}
        for i in range(add):
            with open(os.path.join(path, f'new-{i}'), 'w'):
                pass
        removed = []
        for name in sorted(os.listdir(path)):
            if len(removed) >= remove:
                break
            if name not in seen and not name.startswith('new-'):
                os.unlink(os.path.join(path, name))
                removed.append(name)
        tail = read(d)
        libc.seekdir(d, pos)
        again = read(d)
        libc.rewinddir(d)
        whole = read(d)
    finally:
        libc.closedir(d)
    print(json.dumps({'head': head, 'tail': tail, 'again': again, 'whole': whole, 'removed': removed}))


try:
    main()
except OSError as e:
    print(f'{e}', file=sys.stderr)
    sys.exit(2)
