#!/usr/bin/env python3
"""Trees deeper than PATH_MAX, reached the only way a process can: one directory
fd at a time (openat with dir_fd), never a full path (the kernel refuses a path
of PATH_MAX bytes or more with ENAMETOOLONG). Used by test/integration/depth-scale.test.ts.

  deep-tree.py build ROOT DEPTH FILE TEXT   chain of DEPTH directories of 200-byte
                                            names under ROOT, FILE holding TEXT at the bottom
  deep-tree.py ops ROOT DEPTH               read/stat/create/rename/unlink/mkdir at the
                                            bottom; prints a transcript (errno names on failure)
  deep-tree.py dump ROOT                    every entry below ROOT: path, type, mode, size,
                                            nlink, sha256 of file data, sorted
  deep-tree.py rm ROOT                      removes ROOT and everything below it
Paths are printed with each chain component shortened to its last byte (the rest is
a fixed filler), so lines stay short and comparable.
"""
import errno
import hashlib
import os
import shutil
import stat
import sys


def comp(i):
    return 'd' * 199 + chr(ord('a') + i % 26)


def short(name):
    return '<%s>' % name[-1] if len(name) == 200 and name.startswith('d' * 199) else name


def down(root, depth, create=False):
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    for i in range(depth):
        if create:
            try:
                os.mkdir(comp(i), 0o755, dir_fd=fd)
            except FileExistsError:
                pass
        nfd = os.open(comp(i), os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = nfd
    return fd


def build(root, depth, name, text):
    fd = down(root, int(depth), create=True)
    f = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644, dir_fd=fd)
    os.write(f, text.encode())
    os.close(f)
    os.close(fd)


def step(label, fn):
    try:
        r = fn()
        print(label, 'ok' if r is None else r)
    except OSError as e:
        print(label, errno.errorcode.get(e.errno, str(e.errno)))


def ops(root, depth):
    depth = int(depth)
    try:
        fd = down(root, depth)
    except OSError as e:
        print('walk', errno.errorcode.get(e.errno, str(e.errno)))
        return

    def read(name):
        f = os.open(name, os.O_RDONLY, dir_fd=fd)
        try:
            return os.read(f, 4096).decode()
        finally:
            os.close(f)

    def st(name):
        s = os.stat(name, dir_fd=fd, follow_symlinks=False)
        return '%o %d %d' % (s.st_mode, s.st_size, s.st_nlink)

    def write(name, data, flags=os.O_WRONLY | os.O_CREAT | os.O_APPEND):
        f = os.open(name, flags, 0o640, dir_fd=fd)
        os.write(f, data)
        os.close(f)

    step('read lower', lambda: repr(read('bottom')))
    step('read upper', lambda: repr(read('upfile')))
    step('stat lower', lambda: st('bottom'))
    step('append lower', lambda: write('bottom', b'more\n'))
    step('read lower after copy-up', lambda: repr(read('bottom')))
    step('create', lambda: write('new', b'new\n', os.O_WRONLY | os.O_CREAT | os.O_EXCL))
    step('stat new', lambda: st('new'))
    step('rename new', lambda: os.rename('new', 'renamed', src_dir_fd=fd, dst_dir_fd=fd))
    step('rename lower over upper', lambda: os.rename('bottom', 'upfile', src_dir_fd=fd, dst_dir_fd=fd))
    step('read moved', lambda: repr(read('upfile')))
    step('mkdir', lambda: os.mkdir('sub', 0o750, dir_fd=fd))
    step('link', lambda: os.link('renamed', 'sub/hard', src_dir_fd=fd, dst_dir_fd=fd))
    step('stat link', lambda: st('renamed'))
    step('symlink', lambda: os.symlink('renamed', 'sym', dir_fd=fd))
    step('readlink', lambda: os.readlink('sym', dir_fd=fd))
    step('unlink', lambda: os.unlink('renamed', dir_fd=fd))
    step('stat bottom gone', lambda: st('bottom'))
    os.close(fd)
    # A directory opened anew: a listing of the fd opened before the changes may be the
    # one made at opendir (stratafs) or at the first read (the kernel); POSIX allows both.
    fd = down(root, depth)
    step('list', lambda: ' '.join(sorted(os.listdir(fd))))
    os.close(fd)


def rm(root):
    # shutil.rmtree works with directory fds on Linux (no path longer than one name).
    shutil.rmtree(root)


def dump(root):
    out = []

    def walk(fd, prefix):
        for name in sorted(os.listdir(fd)):
            s = os.stat(name, dir_fd=fd, follow_symlinks=False)
            p = prefix + '/' + short(name)
            kind = stat.S_IFMT(s.st_mode)
            extra = ''
            if stat.S_ISREG(kind):
                f = os.open(name, os.O_RDONLY, dir_fd=fd)
                h = hashlib.sha256()
                while True:
                    b = os.read(f, 1 << 16)
                    if not b:
                        break
                    h.update(b)
                os.close(f)
                extra = ' size=%d nlink=%d sha=%s' % (s.st_size, s.st_nlink, h.hexdigest()[:16])
            elif stat.S_ISLNK(kind):
                extra = ' -> ' + os.readlink(name, dir_fd=fd)
            out.append('%s %o%s' % (p, s.st_mode, extra))
            if stat.S_ISDIR(kind):
                nfd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                walk(nfd, p)
                os.close(nfd)

    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    walk(fd, '')
    os.close(fd)
    print('\n'.join(out))


if __name__ == '__main__':
    {'build': build, 'ops': ops, 'dump': dump, 'rm': rm}[sys.argv[1]](*sys.argv[2:])
