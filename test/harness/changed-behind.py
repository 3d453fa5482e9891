#!/usr/bin/env python3
# By hand, as root (native-notes/fuse-server.md, close_to_open):
#   changed-behind.py SCRATCH kernel|fo|strata [BUILD] [,EXTRA_OPTS] [WAIT_S]
# mounts kernel overlayfs, fuse-overlayfs or stratafs (BUILD: a checkout with dist/, default
# this one) on layers made in SCRATCH (a new directory), reads and stats each file through the
# mount, changes the layer files behind it, and prints what reads and stats show afterwards.
import os, sys, subprocess, time
scratch, impl = sys.argv[1], sys.argv[2]
build = (len(sys.argv) > 3 and sys.argv[3]) or os.path.realpath(os.path.join(os.path.dirname(__file__), '..', '..'))
extra = sys.argv[4] if len(sys.argv) > 4 else ''; wait = float(sys.argv[5]) if len(sys.argv) > 5 else 0
R = scratch
for d in 'luwm': os.makedirs(f'{R}/{d}')
L, U, M = f'{R}/l', f'{R}/u', f'{R}/m'
def w(p, s): open(p, 'w').write(s)
for f in ['same', 'grow', 'ren', 'fd', 'fdren']: w(f'{L}/{f}', 'old-data\n')
for f in ['up', 'upren']: w(f'{U}/{f}', 'old-data\n')
O = f'lowerdir={L},upperdir={U},workdir={R}/w'
env = dict(os.environ)
if impl == 'kernel': subprocess.run(['mount', '-t', 'overlay', 'overlay', '-o', O, M], check=True)
elif impl == 'fo': subprocess.run(['fuse-overlayfs', '-o', O + extra, M], check=True, stderr=subprocess.DEVNULL)
else: subprocess.run(['node', f'{build}/dist/cli/main.js', '-o', O + extra, M], check=True, env=env)
try:
    names = ['same', 'grow', 'ren', 'up', 'upren']
    for f in names + ['fd', 'fdren']: open(f'{M}/{f}').read(); os.stat(f'{M}/{f}')
    fd, fdren = os.open(f'{M}/fd', os.O_RDONLY), os.open(f'{M}/fdren', os.O_RDONLY)
    os.pread(fd, 100, 0); os.pread(fdren, 100, 0)
    w(f'{L}/same', 'new-data\n'); w(f'{L}/grow', 'new-data, longer\n'); w(f'{L}/fd', 'new-data\n')
    for d, f in [(L, 'ren'), (U, 'upren'), (L, 'fdren')]: w(f'{d}/{f}.tmp', 'new-data by rename\n'); os.rename(f'{d}/{f}.tmp', f'{d}/{f}')
    w(f'{U}/up', 'new-data upper\n')
    time.sleep(wait)
    for f in names: print(f'{f}: read={open(f"{M}/{f}").read()!r} stat={os.stat(f"{M}/{f}").st_size}')
    print('fd before, in place, no new open:', repr(os.pread(fd, 100, 0)))
    print('fd before, renamed over, no new open:', repr(os.pread(fdren, 100, 0)))
    for f in ['fd', 'fdren']: open(f'{M}/{f}').read()
    print('fd before, in place, after a new open:', repr(os.pread(fd, 100, 0)))
    print('fd before, renamed over, after a new open:', repr(os.pread(fdren, 100, 0)))
    os.close(fd); os.close(fdren)
    w(f'{L}/grow', 'x' * 21); time.sleep(wait)
    print('grow rewritten again, stat without open:', os.stat(f'{M}/grow').st_size, '(21 on disk)')
finally:
    subprocess.run(['umount', M] if impl != 'strata' else ['node', f'{build}/dist/cli/main.js', 'umount', M])
