/*
 * stratafs_sys: the system calls Node's fs lacks, for the overlay core.
 * Contract: sys-api.ts. Newcomer's guide: native-notes/syscalls.md.
 *
 * Conventions: synchronous calls return a value or -errno and never throw on
 * an errno (only on wrong argument types). Every `rel` is resolved beneath its
 * dirfd with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS) and its last
 * component is never followed. Strings cross as latin1 so bytes pass unchanged.
 */
#define _GNU_SOURCE
#define NAPI_VERSION 8
#include <node_api.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

/* Not from <linux/fs.h>: with glibc 2.36 it clashes with <sys/mount.h>. */
#ifndef FICLONE
#define FICLONE _IOW(0x94, 9, int)
#endif
#ifndef SYS_fchmodat2
#define SYS_fchmodat2 452
#endif

/* One byte more than PATH_MAX + NUL, so an over-long string is detectable. */
#define MAXP (PATH_MAX + 2)
#define XATTR_BUF 65536
#define STAT_LEN 20
#define STATVFS_LEN 11
#define COPY_POOL 2
#define COPY_CHUNK ((size_t)1 << 30)
#define RW_BUF ((size_t)1 << 20)

/* ---- argument and result helpers ------------------------------------- */

static napi_value num(napi_env env, double v) {
  napi_value r;
  napi_create_double(env, v, &r);
  return r;
}

static int res(long r) { return r < 0 ? -errno : (int)r; }

static bool get_typed(napi_env env, napi_value v, size_t min, double **out) {
  napi_typedarray_type t;
  size_t len;
  void *data;
  if (napi_get_typedarray_info(env, v, &t, &len, &data, NULL, NULL) != napi_ok) return false;
  *out = data;
  return t == napi_float64_array && len >= min;
}

static bool get_buf(napi_env env, napi_value v, va_list *ap) {
  void **data = va_arg(*ap, void **);
  size_t *len = va_arg(*ap, size_t *);
  return napi_get_buffer_info(env, v, data, len) == napi_ok;
}

/* latin1 into a MAXP buffer; > 0 is an errno for a string no path can be. */
static int get_str(napi_env env, napi_value v, char *buf) {
  size_t len;
  if (napi_get_value_string_latin1(env, v, buf, MAXP, &len) != napi_ok) return -1;
  if (len > PATH_MAX) return ENAMETOOLONG;
  return strlen(buf) == len ? 0 : EINVAL;
}

/* A number, or a bigint (file offsets from 2^53 on): exactly; -1 for anything else or a lossy bigint. */
static int get_i64_exact(napi_env env, napi_value v, int64_t *out) {
  bool lossless;
  if (napi_get_value_bigint_int64(env, v, out, &lossless) == napi_ok) return lossless ? 0 : -1;
  return napi_get_value_int64(env, v, out) == napi_ok ? 0 : -1;
}

/* Reads one argument by format letter; -1 type error, 0 ok, > 0 errno. */
static int get_one(napi_env env, napi_value v, char c, va_list *ap) {
  switch (c) {
  case 'i': return napi_get_value_int32(env, v, va_arg(*ap, int32_t *)) == napi_ok ? 0 : -1;
  case 'l': return napi_get_value_int64(env, v, va_arg(*ap, int64_t *)) == napi_ok ? 0 : -1;
  case 'L': return get_i64_exact(env, v, va_arg(*ap, int64_t *));
  case 'B': return napi_get_value_bool(env, v, va_arg(*ap, bool *)) == napi_ok ? 0 : -1;
  case 's': return get_str(env, v, va_arg(*ap, char *));
  case 'b': return get_buf(env, v, ap) ? 0 : -1;
  case 'S': return get_typed(env, v, STAT_LEN, va_arg(*ap, double **)) ? 0 : -1;
  case 'V': return get_typed(env, v, STATVFS_LEN, va_arg(*ap, double **)) ? 0 : -1;
  }
  return -1;
}

/*
 * Parses the call's arguments by a format string (i int32, l int64, B bool,
 * s latin1 path, b Buffer, S/V Float64Array for stat/statvfs).
 * Returns 0, -1 after throwing a TypeError, or a positive errno.
 */
static int get_args(napi_env env, napi_callback_info info, const char *fmt, ...) {
  napi_value argv[8];
  size_t argc = 8, n = strlen(fmt);
  int e = 0;
  va_list ap;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < n) e = -1;
  va_start(ap, fmt);
  for (size_t i = 0; e == 0 && i < n; i++) e = get_one(env, argv[i], fmt[i], &ap);
  va_end(ap);
  if (e < 0) napi_throw_type_error(env, NULL, "stratafs_sys: bad argument types");
  return e;
}

#define GET(...)                                   \
  do {                                             \
    int e_ = get_args(env, info, __VA_ARGS__);     \
    if (e_ < 0) return NULL;                       \
    if (e_ > 0) return num(env, -e_);              \
  } while (0)

#define FN(name) static napi_value f_##name(napi_env env, napi_callback_info info)

/* ---- resolution beneath a directory fd ------------------------------- */

/*
 * openat2 beneath dirfd: no symlink anywhere (ELOOP, the trailing one too unless
 * the caller asks for O_PATH|O_NOFOLLOW to get the symlink itself), no escape
 * by '..' or an absolute path (EXDEV).
 */
static int beneath(int dirfd, const char *rel, int flags, int mode) {
  struct open_how how = {
    /* O_LARGEFILE: the core drops the caller's bit (its value is per-arch); every backing fd is large-file capable.
     * It is 0 in glibc on 64-bit (openat2 forces it there) and refused together with O_PATH. */
    .flags = (unsigned)(flags | O_CLOEXEC | (flags & O_PATH ? 0 : O_LARGEFILE)),
    .mode = (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ? (unsigned)mode : 0,
    .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS,
  };
  long fd;
  int tries = 0;
  /* EAGAIN: a concurrent rename made the kernel doubt a '..' step; retry. */
  do fd = syscall(SYS_openat2, dirfd, rel[0] ? rel : ".", &how, sizeof how);
  while (fd < 0 && errno == EAGAIN && ++tries < 8);
  return res(fd);
}

/* Where a call acts: (fd, base) with base one component, or "" for fd itself. */
typedef struct {
  int fd;
  bool owned;
  const char *base;
} At;

static int at_self(int dirfd, const char *rel, At *at) {
  int fd = beneath(dirfd, rel, O_PATH, 0);
  if (fd < 0) return fd;
  at->fd = fd;
  at->owned = true;
  at->base = "";
  return 0;
}

/*
 * Splits rel into its parent (opened beneath dirfd) and last component. A
 * single component needs no openat2: it cannot cross a symlink, and every
 * caller passes it with AT_SYMLINK_NOFOLLOW (or an l* call). Only '..' could
 * leave dirfd, so it is refused as RESOLVE_BENEATH would.
 */
static int at_parent(int dirfd, char *rel, At *at) {
  size_t n = strlen(rel);
  at->fd = dirfd;
  at->owned = false;
  at->base = rel;
  while (n > 1 && rel[n - 1] == '/') rel[--n] = 0;
  if (rel[0] == '/') return -EXDEV;
  char *slash = strrchr(rel, '/');
  if (!slash) return strcmp(rel, "..") ? 0 : -EXDEV;
  if (!strcmp(slash + 1, "..")) return at_self(dirfd, rel, at);
  *slash = 0;
  int fd = beneath(dirfd, rel, O_PATH | O_DIRECTORY, 0);
  if (fd < 0) return fd;
  at->fd = fd;
  at->owned = true;
  at->base = slash + 1;
  return 0;
}

static void at_done(At *at) {
  if (at->owned) close(at->fd);
  at->owned = false;
}

#define EMPTY(at) ((at).base[0] ? 0 : AT_EMPTY_PATH)

/* Runs `call` (a syscall returning < 0 with errno) on At `at` of (dirfd, rel). */
#define ON_AT(dirfd, rel, call)             \
  ({                                        \
    At at;                                  \
    int r_ = at_parent((dirfd), (rel), &at); \
    if (r_ == 0) r_ = res(call);            \
    at_done(&at);                           \
    r_;                                     \
  })

/* ---- open, close, stat -------------------------------------------------- */

FN(openRoot) {
  char path[MAXP];
  GET("s", path);
  return num(env, res(open(path, O_PATH | O_DIRECTORY | O_CLOEXEC)));
}

FN(openat) {
  int dirfd, flags, mode;
  char rel[MAXP];
  GET("isii", &dirfd, rel, &flags, &mode);
  return num(env, beneath(dirfd, rel, flags | O_NOFOLLOW, mode));
}

FN(close) {
  int fd;
  GET("i", &fd);
  return num(env, res(close(fd)));
}

static void fill_stat(double *o, const struct stat *s) {
  o[0] = (double)s->st_dev, o[1] = (double)s->st_ino, o[2] = s->st_mode, o[3] = (double)s->st_nlink;
  o[4] = s->st_uid, o[5] = s->st_gid, o[6] = (double)s->st_rdev, o[7] = (double)s->st_size;
  o[8] = (double)s->st_blksize, o[9] = (double)s->st_blocks;
  o[10] = (double)s->st_atim.tv_sec, o[11] = (double)s->st_atim.tv_nsec;
  o[12] = (double)s->st_mtim.tv_sec, o[13] = (double)s->st_mtim.tv_nsec;
  o[14] = (double)s->st_ctim.tv_sec, o[15] = (double)s->st_ctim.tv_nsec;
  /* o[1] and o[7] round above 2^53 (xino numbers are 2^62 + n, a sparse tmpfs file may
   * be 2^63 - 1 bytes): the halves are exact. */
  o[16] = (double)(uint32_t)((uint64_t)s->st_ino >> 32), o[17] = (double)(uint32_t)s->st_ino;
  o[18] = (double)(uint32_t)((uint64_t)s->st_size >> 32), o[19] = (double)(uint32_t)s->st_size;
}

/*
 * A single component goes straight to fstatat (it cannot cross a symlink);
 * longer names open the object itself (O_PATH|O_NOFOLLOW: a final symlink
 * opens as itself) and fstat it, which measured cheaper than opening the parent.
 */
static int lstat_rel(int dirfd, char *rel, struct stat *st) {
  if (!strchr(rel, '/') || !rel[0]) return ON_AT(dirfd, rel, fstatat(at.fd, at.base, st, AT_SYMLINK_NOFOLLOW | EMPTY(at)));
  int fd = beneath(dirfd, rel, O_PATH | O_NOFOLLOW, 0);
  if (fd < 0) return fd;
  int r = res(fstatat(fd, "", st, AT_EMPTY_PATH));
  close(fd);
  return r;
}

FN(lstatat) {
  int dirfd;
  char rel[MAXP];
  double *out;
  struct stat st;
  GET("isS", &dirfd, rel, &out);
  int r = lstat_rel(dirfd, rel, &st);
  if (r == 0) fill_stat(out, &st);
  return num(env, r);
}

FN(fstat) {
  int fd;
  double *out;
  struct stat st;
  GET("iS", &fd, &out);
  int r = res(fstat(fd, &st));
  if (r == 0) fill_stat(out, &st);
  return num(env, r);
}

FN(fstatvfs) {
  int fd;
  double *o;
  struct statvfs s;
  GET("iV", &fd, &o);
  int r = res(fstatvfs(fd, &s));
  if (r) return num(env, r);
  o[0] = (double)s.f_bsize, o[1] = (double)s.f_frsize, o[2] = (double)s.f_blocks;
  o[3] = (double)s.f_bfree, o[4] = (double)s.f_bavail, o[5] = (double)s.f_files;
  o[6] = (double)s.f_ffree, o[7] = (double)s.f_favail, o[8] = (double)s.f_fsid;
  o[9] = (double)s.f_flag, o[10] = (double)s.f_namemax;
  return num(env, 0);
}

/* ---- namespace ------------------------------------------------------------ */

FN(mkdirat) {
  int dirfd, mode;
  char rel[MAXP];
  GET("isi", &dirfd, rel, &mode);
  return num(env, ON_AT(dirfd, rel, mkdirat(at.fd, at.base, (mode_t)mode)));
}

FN(mknodat) {
  int dirfd, mode;
  int64_t dev;
  char rel[MAXP];
  GET("isil", &dirfd, rel, &mode, &dev);
  return num(env, ON_AT(dirfd, rel, mknodat(at.fd, at.base, (mode_t)mode, (dev_t)dev)));
}

FN(unlinkat) {
  int dirfd, flags;
  char rel[MAXP];
  GET("isi", &dirfd, rel, &flags);
  return num(env, ON_AT(dirfd, rel, unlinkat(at.fd, at.base, flags)));
}

FN(symlinkat) {
  int dirfd;
  char target[MAXP], rel[MAXP];
  GET("sis", target, &dirfd, rel);
  return num(env, ON_AT(dirfd, rel, symlinkat(target, at.fd, at.base)));
}

/* Two-name calls: both sides resolved beneath their own dirfd. */
static int two_at(int od, char *orel, int nd, char *nrel, int flags, bool link) {
  At a, b;
  int r = at_parent(od, orel, &a);
  if (r == 0 && (r = at_parent(nd, nrel, &b)) == 0) {
    if (link) r = res(linkat(a.fd, a.base, b.fd, b.base, EMPTY(a)));
    else r = res(renameat2(a.fd, a.base, b.fd, b.base, (unsigned)flags));
    at_done(&b);
  }
  at_done(&a);
  return r;
}

FN(renameat2) {
  int od, nd, flags;
  char orel[MAXP], nrel[MAXP];
  GET("isisi", &od, orel, &nd, nrel, &flags);
  return num(env, two_at(od, orel, nd, nrel, flags, false));
}

/* oldrel '' links the fd itself (AT_EMPTY_PATH, e.g. an O_TMPFILE): needs CAP_DAC_READ_SEARCH. */
FN(linkat) {
  int od, nd;
  char orel[MAXP], nrel[MAXP];
  GET("isis", &od, orel, &nd, nrel);
  return num(env, two_at(od, orel, nd, nrel, 0, true));
}

FN(readlinkat) {
  int dirfd;
  char rel[MAXP], buf[PATH_MAX];
  ssize_t n = 0;
  napi_value s;
  GET("is", &dirfd, rel);
  int r = ON_AT(dirfd, rel, n = readlinkat(at.fd, at.base, buf, sizeof buf));
  if (r < 0) return num(env, r);
  napi_create_string_latin1(env, buf, (size_t)n, &s);
  return s;
}

/* ---- attributes ------------------------------------------------------------ */

FN(fchownat) {
  int dirfd, uid, gid;
  char rel[MAXP];
  GET("isii", &dirfd, rel, &uid, &gid);
  return num(env, ON_AT(dirfd, rel,
      fchownat(at.fd, at.base, (uid_t)uid, (gid_t)gid, AT_SYMLINK_NOFOLLOW | EMPTY(at))));
}

/* fchmodat2 (Linux 6.6) honours AT_SYMLINK_NOFOLLOW; older kernels get /proc/self/fd. */
static int chmod_at(At *at, mode_t mode) {
  char p[64];
  long r = syscall(SYS_fchmodat2, at->fd, at->base, mode, AT_SYMLINK_NOFOLLOW | EMPTY(*at));
  if (r == 0 || errno != ENOSYS) return res(r);
  if (at->base[0]) return res(fchmodat(at->fd, at->base, mode, AT_SYMLINK_NOFOLLOW));
  snprintf(p, sizeof p, "/proc/self/fd/%d", at->fd);
  return res(chmod(p, mode));
}

FN(fchmodat) {
  int dirfd, mode;
  char rel[MAXP];
  At at;
  GET("isi", &dirfd, rel, &mode);
  int r = at_parent(dirfd, rel, &at);
  if (r == 0) r = chmod_at(&at, (mode_t)mode);
  at_done(&at);
  return num(env, r);
}

FN(utimensat) {
  int dirfd;
  int64_t as, an, ms, mn;
  char rel[MAXP];
  GET("isllll", &dirfd, rel, &as, &an, &ms, &mn);
  struct timespec ts[2] = {{(time_t)as, (long)an}, {(time_t)ms, (long)mn}};
  return num(env, ON_AT(dirfd, rel, utimensat(at.fd, at.base, ts, AT_SYMLINK_NOFOLLOW | EMPTY(at))));
}

FN(futimens) {
  int fd;
  int64_t as, an, ms, mn;
  GET("illll", &fd, &as, &an, &ms, &mn);
  struct timespec ts[2] = {{(time_t)as, (long)an}, {(time_t)ms, (long)mn}};
  return num(env, res(futimens(fd, ts)));
}

/* ---- file descriptors ------------------------------------------------------ */

/* Node's fs.write writes at the current offset when the position is 2^53 or more (checked, Node 20). */
/*
 * The birth time stat(2) does not carry (statx STATX_BTIME), of rel beneath dirfd, or of
 * dirfd itself for rel "": [seconds, nanoseconds], [] when the file system keeps none, or -errno.
 */
FN(btimeat) {
  int dirfd;
  char rel[MAXP];
  struct statx sx;
  napi_value arr;
  GET("is", &dirfd, rel);
  int r = ON_AT(dirfd, rel, statx(at.fd, at.base, AT_SYMLINK_NOFOLLOW | EMPTY(at), STATX_BTIME, &sx));
  if (r < 0) return num(env, r);
  napi_create_array(env, &arr);
  if (sx.stx_mask & STATX_BTIME) {
    napi_set_element(env, arr, 0, num(env, (double)sx.stx_btime.tv_sec));
    napi_set_element(env, arr, 1, num(env, (double)sx.stx_btime.tv_nsec));
  }
  return arr;
}

/* An offset back to JS as sys-api's Offset: a number below 2^53, else an exact bigint. */
static napi_value offset_value(napi_env env, int64_t v) {
  napi_value r;
  if (v < ((int64_t)1 << 53) && v > -((int64_t)1 << 53)) return num(env, (double)v);
  napi_create_bigint_int64(env, v, &r);
  return r;
}

/* lseek(2), for SEEK_DATA/SEEK_HOLE on a layer's file: the new offset or -errno. */
FN(lseek) {
  int fd, whence;
  int64_t off;
  GET("iLi", &fd, &off, &whence);
  off_t r = lseek(fd, (off_t)off, whence);
  return r < 0 ? num(env, -errno) : offset_value(env, (int64_t)r);
}

FN(pwrite) {
  int fd, n;
  void *buf;
  size_t len;
  int64_t pos;
  GET("ibiL", &fd, &buf, &len, &n, &pos);
  if (n < 0 || (size_t)n > len) return num(env, -EINVAL);
  return num(env, (double)res(pwrite(fd, buf, (size_t)n, (off_t)pos)));
}

FN(ftruncate) {
  int fd;
  int64_t size;
  GET("iL", &fd, &size);
  return num(env, res(ftruncate(fd, (off_t)size)));
}

/*
 * pread/pwrite of an O_DIRECT descriptor through a page-aligned bounce buffer: the
 * buffers Node hands us have no alignment, and a direct read or write of the backing
 * file needs one (EINVAL otherwise). Offset and length are the caller's: the backing
 * file system still judges their alignment, as under kernel overlayfs.
 */
FN(pioAligned) {
  int fd;
  void *data;
  size_t cap;
  int64_t len, pos;
  bool write;
  GET("iblLB", &fd, &data, &cap, &len, &pos, &write);
  if (len < 0 || (size_t)len > cap) return num(env, -EINVAL);
  void *bounce;
  size_t size = ((size_t)len + 4095) & ~(size_t)4095;
  if (posix_memalign(&bounce, 4096, size ? size : 4096)) return num(env, -ENOMEM);
  ssize_t n;
  if (write) {
    memcpy(bounce, data, (size_t)len);
    do n = pwrite(fd, bounce, (size_t)len, (off_t)pos); while (n < 0 && errno == EINTR);
  } else {
    do n = pread(fd, bounce, (size_t)len, (off_t)pos); while (n < 0 && errno == EINTR);
    if (n > 0) memcpy(data, bounce, (size_t)n);
  }
  int err = errno;
  free(bounce);
  return num(env, n < 0 ? -err : (double)n);
}

FN(fsync) {
  int fd;
  bool data;
  GET("iB", &fd, &data);
  return num(env, res(data ? fdatasync(fd) : fsync(fd)));
}

FN(fallocate) {
  int fd, mode;
  int64_t off, len;
  GET("iill", &fd, &mode, &off, &len);
  return num(env, res(fallocate(fd, mode, (off_t)off, (off_t)len)));
}

FN(flock) {
  int fd, op;
  GET("ii", &fd, &op);
  return num(env, res(flock(fd, op)));
}

/* The daemon points its stdout/stderr at its log once it knows the log's path (cli/daemon.ts). */
FN(dup2) {
  int oldfd, newfd;
  GET("ii", &oldfd, &newfd);
  return num(env, res(dup2(oldfd, newfd)));
}

/* ---- readdir ---------------------------------------------------------------- */

typedef struct {
  uint8_t *p;
  size_t n, cap;
} Bytes;

static bool push_byte(Bytes *b, uint8_t v) {
  if (b->n == b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 256;
    uint8_t *p = realloc(b->p, cap);
    if (!p) return false;
    b->p = p, b->cap = cap;
  }
  b->p[b->n++] = v;
  return true;
}

static bool dots(const char *s) { return s[0] == '.' && (!s[1] || (s[1] == '.' && !s[2])); }

/* Appends the records of one getdents64 batch; false on out-of-memory. */
static bool add_dents(napi_env env, napi_value names, Bytes *types, char *buf, long len) {
  for (long off = 0; off < len;) {
    struct dirent64 *d = (struct dirent64 *)(buf + off);
    off += d->d_reclen;
    if (dots(d->d_name)) continue;
    napi_value s;
    napi_create_string_latin1(env, d->d_name, NAPI_AUTO_LENGTH, &s);
    napi_set_element(env, names, (uint32_t)types->n, s);
    if (!push_byte(types, d->d_type)) return false;
  }
  return true;
}

static napi_value dir_result(napi_env env, napi_value names, Bytes *types) {
  napi_value obj, ab, arr;
  void *data;
  napi_create_arraybuffer(env, types->n, &data, &ab);
  if (types->n) memcpy(data, types->p, types->n);
  napi_create_typedarray(env, napi_uint8_array, types->n, ab, 0, &arr);
  napi_create_object(env, &obj);
  napi_set_named_property(env, obj, "names", names);
  napi_set_named_property(env, obj, "types", arr);
  return obj;
}

static napi_value list_dir(napi_env env, int fd) {
  char buf[65536];
  napi_value names, out;
  Bytes types = {0};
  long len;
  bool ok = true;
  napi_create_array(env, &names);
  while (ok && (len = getdents64(fd, buf, sizeof buf)) > 0) ok = add_dents(env, names, &types, buf, len);
  if (!ok) out = num(env, -ENOMEM);
  else out = len < 0 ? num(env, -errno) : dir_result(env, names, &types);
  free(types.p);
  return out;
}

FN(readdirat) {
  int dirfd;
  char rel[MAXP];
  GET("is", &dirfd, rel);
  int fd = beneath(dirfd, rel, O_RDONLY | O_DIRECTORY, 0);
  if (fd < 0) return num(env, fd);
  napi_value r = list_dir(env, fd);
  close(fd);
  return r;
}

/* ---- xattrs -------------------------------------------------------------- */

/*
 * Linux 6.13 has *xattrat(dirfd, name, AT_SYMLINK_NOFOLLOW): one system call on
 * (parentfd, base). Older kernels get the /proc route below, as does base ""
 * (an O_PATH fd: the *at calls reject it with EBADF). Numbers are the same on
 * every architecture (the unified table after 424).
 */
#define SYS_setxattrat_ 463
#define SYS_getxattrat_ 464
#define SYS_listxattrat_ 465
#define SYS_removexattrat_ 466

struct xattr_args_ {
  uint64_t value __attribute__((aligned(8)));
  uint32_t size;
  uint32_t flags;
};

/* 1 once the kernel said ENOSYS, or when a test forces the /proc route. */
static int xattrat_off;

/*
 * The /proc route. A symlink cannot be opened for f*xattr (O_PATH fds give
 * EBADF), and l*xattr wants a path. "/proc/self/fd/N/base" is one: the kernel
 * jumps through the magic link /proc/self/fd/N straight to the directory we
 * already resolved beneath the layer, then looks up only `base` there,
 * unfollowed by l*. No host path is rebuilt and nothing but one plain
 * component is resolved by name. For base "" (the fd itself) the non-l call
 * follows the magic link to the fd's own inode.
 */
#define XPATH (MAXP + 32)

static int proc_path(char *out, const At *at) {
  int n = at->base[0] ? snprintf(out, XPATH, "/proc/self/fd/%d/%s", at->fd, at->base)
                      : snprintf(out, XPATH, "/proc/self/fd/%d", at->fd);
  return n >= XPATH ? (errno = ENAMETOOLONG, -1) : 0;
}

/* True when the *xattrat call should be tried; false means use the /proc route. */
static bool try_xattrat(const At *at) { return at->base[0] && !xattrat_off; }

/* After a *xattrat call: true if it answered (r is final), false to fall back. */
static bool xattrat_answered(long r) {
  if (r >= 0 || errno != ENOSYS) return true;
  xattrat_off = 1;
  return false;
}

static long x_get(const At *at, const char *name, char *buf, size_t size) {
  char p[XPATH];
  struct xattr_args_ args = {(uintptr_t)buf, (uint32_t)size, 0};
  long r;
  if (try_xattrat(at)) {
    r = syscall(SYS_getxattrat_, at->fd, at->base, AT_SYMLINK_NOFOLLOW, name, &args, sizeof args);
    if (xattrat_answered(r)) return r;
  }
  if (proc_path(p, at)) return -1;
  return at->base[0] ? lgetxattr(p, name, buf, size) : getxattr(p, name, buf, size);
}

static long x_set(const At *at, const char *name, const void *val, size_t len, int flags) {
  char p[XPATH];
  struct xattr_args_ args = {(uintptr_t)val, (uint32_t)len, (uint32_t)flags};
  long r;
  if (try_xattrat(at)) {
    r = syscall(SYS_setxattrat_, at->fd, at->base, AT_SYMLINK_NOFOLLOW, name, &args, sizeof args);
    if (xattrat_answered(r)) return r;
  }
  if (proc_path(p, at)) return -1;
  return at->base[0] ? lsetxattr(p, name, val, len, flags) : setxattr(p, name, val, len, flags);
}

static long x_list(const At *at, char *buf, size_t size) {
  char p[XPATH];
  long r;
  if (try_xattrat(at)) {
    r = syscall(SYS_listxattrat_, at->fd, at->base, AT_SYMLINK_NOFOLLOW, buf, size);
    if (xattrat_answered(r)) return r;
  }
  if (proc_path(p, at)) return -1;
  return at->base[0] ? llistxattr(p, buf, size) : listxattr(p, buf, size);
}

static long x_remove(const At *at, const char *name) {
  char p[XPATH];
  long r;
  if (try_xattrat(at)) {
    r = syscall(SYS_removexattrat_, at->fd, at->base, AT_SYMLINK_NOFOLLOW, name);
    if (xattrat_answered(r)) return r;
  }
  if (proc_path(p, at)) return -1;
  return at->base[0] ? lremovexattr(p, name) : removexattr(p, name);
}

/*
 * The kernel allocates (and zeroes) a buffer as large as the one we offer, so
 * a 64 KiB offer costs ~15 µs per call. Overlay xattrs are small: offer
 * XATTR_SMALL bytes first and the full size only after ERANGE.
 */
#define XATTR_SMALL 256

static long x_get_any(const At *at, const char *name, char *buf) {
  long n = x_get(at, name, buf, XATTR_SMALL);
  return n < 0 && errno == ERANGE ? x_get(at, name, buf, XATTR_BUF) : n;
}

static long x_list_any(const At *at, char *buf) {
  long n = x_list(at, buf, XATTR_SMALL);
  return n < 0 && errno == ERANGE ? x_list(at, buf, XATTR_BUF) : n;
}

static napi_value xvalue(napi_env env, long n, const char *buf) {
  napi_value b;
  if (n < 0) return num(env, -errno);
  napi_create_buffer_copy(env, (size_t)n, buf, NULL, &b);
  return b;
}

static napi_value xnames(napi_env env, long n, const char *buf) {
  napi_value arr, s;
  uint32_t i = 0;
  if (n < 0) return num(env, -errno);
  napi_create_array(env, &arr);
  for (long off = 0; off < n; off += (long)strlen(buf + off) + 1) {
    napi_create_string_latin1(env, buf + off, NAPI_AUTO_LENGTH, &s);
    napi_set_element(env, arr, i++, s);
  }
  return arr;
}

FN(lgetxattrat) {
  int dirfd;
  char rel[MAXP], name[MAXP], buf[XATTR_BUF];
  long n = 0;
  GET("iss", &dirfd, rel, name);
  int r = ON_AT(dirfd, rel, n = x_get_any(&at, name, buf));
  return r < 0 ? num(env, r) : xvalue(env, n, buf);
}

FN(lsetxattrat) {
  int dirfd, flags;
  char rel[MAXP], name[MAXP];
  void *val;
  size_t len;
  GET("issbi", &dirfd, rel, name, &val, &len, &flags);
  return num(env, ON_AT(dirfd, rel, x_set(&at, name, val, len, flags)));
}

FN(llistxattrat) {
  int dirfd;
  char rel[MAXP], buf[XATTR_BUF];
  long n = 0;
  GET("is", &dirfd, rel);
  int r = ON_AT(dirfd, rel, n = x_list_any(&at, buf));
  return r < 0 ? num(env, r) : xnames(env, n, buf);
}

FN(lremovexattrat) {
  int dirfd;
  char rel[MAXP], name[MAXP];
  GET("iss", &dirfd, rel, name);
  return num(env, ON_AT(dirfd, rel, x_remove(&at, name)));
}

/* Test hook: true forces the /proc route so both routes stay tested on new kernels. */
FN(xattrViaProc) {
  bool on;
  GET("B", &on);
  xattrat_off = on;
  return num(env, 0);
}

FN(fgetxattr) {
  int fd;
  char name[MAXP], buf[XATTR_BUF];
  GET("is", &fd, name);
  long n = fgetxattr(fd, name, buf, XATTR_SMALL);
  if (n < 0 && errno == ERANGE) n = fgetxattr(fd, name, buf, sizeof buf);
  return xvalue(env, n, buf);
}

FN(fsetxattr) {
  int fd, flags;
  char name[MAXP];
  void *val;
  size_t len;
  GET("isbi", &fd, name, &val, &len, &flags);
  return num(env, res(fsetxattr(fd, name, val, len, flags)));
}

FN(flistxattr) {
  int fd;
  char buf[XATTR_BUF];
  GET("i", &fd);
  long n = flistxattr(fd, buf, XATTR_SMALL);
  if (n < 0 && errno == ERANGE) n = flistxattr(fd, buf, sizeof buf);
  return xnames(env, n, buf);
}

FN(fremovexattr) {
  int fd;
  char name[MAXP];
  GET("is", &fd, name);
  return num(env, res(fremovexattr(fd, name)));
}

/* ---- file handles ------------------------------------------------------------ */

static napi_value handle_obj(napi_env env, struct file_handle *fh, int mount_id) {
  napi_value obj, buf;
  napi_create_object(env, &obj);
  napi_create_buffer_copy(env, fh->handle_bytes, fh->f_handle, NULL, &buf);
  napi_set_named_property(env, obj, "type", num(env, fh->handle_type));
  napi_set_named_property(env, obj, "handle", buf);
  napi_set_named_property(env, obj, "mountId", num(env, mount_id));
  return obj;
}

FN(nameToHandle) {
  int dirfd, mount_id = 0;
  char rel[MAXP];
  union { struct file_handle fh; char space[sizeof(struct file_handle) + MAX_HANDLE_SZ]; } u;
  GET("is", &dirfd, rel);
  u.fh.handle_bytes = MAX_HANDLE_SZ;
  int r = ON_AT(dirfd, rel, name_to_handle_at(at.fd, at.base, &u.fh, &mount_id, EMPTY(at)));
  return r < 0 ? num(env, r) : handle_obj(env, &u.fh, mount_id);
}

/* ---- work on threads of our own: copyData, umount2 ------------------------------ */

typedef struct Job {
  struct Job *next;
  void (*run)(struct Job *);
  int src, dst, flags, err;
  bool rw;
  int64_t bytes, off_in, off_out, len;
  const char *method;
  char *buf;
  char path[MAXP];
  napi_deferred deferred;
  napi_threadsafe_function tsfn;
} Job;

static bool clone_unsupported(int e) {
  return e == EOPNOTSUPP || e == EXDEV || e == EINVAL || e == ENOTTY || e == ENOSYS;
}

static ssize_t rw_chunk(Job *j, loff_t *io, loff_t *oo, size_t len) {
  if (!j->buf && !(j->buf = malloc(RW_BUF))) return (errno = ENOMEM, -1);
  ssize_t n = pread(j->src, j->buf, len < RW_BUF ? len : RW_BUF, *io);
  for (ssize_t w = 0, k; n > 0 && w < n; w += k)
    if ((k = pwrite(j->dst, j->buf + w, (size_t)(n - w), *oo + w)) < 0) return -1;
  if (n > 0) *io += n, *oo += n;
  return n;
}

/* copy_file_range until it refuses the pair (EXDEV and kin), then pread/pwrite in C. */
static ssize_t copy_chunk(Job *j, loff_t *io, loff_t *oo, size_t len) {
  if (!j->rw) {
    ssize_t n = copy_file_range(j->src, io, j->dst, oo, len, 0);
    if (n >= 0 || !clone_unsupported(errno)) return n;
    j->rw = true;
    j->method = "readwrite";
  }
  return rw_chunk(j, io, oo, len);
}

static int copy_segment(Job *j, off_t off, off_t len) {
  loff_t io = off, oo = off;
  while (len > 0) {
    ssize_t n = copy_chunk(j, &io, &oo, (size_t)len < COPY_CHUNK ? (size_t)len : COPY_CHUNK);
    if (n < 0) return errno;
    if (n == 0) break; /* the source shrank under us */
    len -= n, j->bytes += n;
  }
  return 0;
}

/* Copies only the data segments: holes are skipped and stay holes in dst. */
static int copy_segments(Job *j, off_t size) {
  for (off_t pos = 0; pos < size;) {
    off_t data = lseek(j->src, pos, SEEK_DATA);
    if (data < 0) return errno == ENXIO ? 0 : errno;
    off_t hole = lseek(j->src, data, SEEK_HOLE);
    if (hole < 0) return errno;
    if (hole > size) hole = size;
    int e = copy_segment(j, data, hole - data);
    if (e) return e;
    pos = hole;
  }
  return 0;
}

static void run_copy(Job *j) {
  struct stat st;
  if (fstat(j->src, &st) < 0) return (void)(j->err = errno);
  if (ioctl(j->dst, FICLONE, j->src) == 0) {
    j->bytes = st.st_size, j->method = "clone";
    return;
  }
  if (!clone_unsupported(errno)) return (void)(j->err = errno);
  j->method = "range";
  j->err = copy_segments(j, st.st_size);
  if (!j->err && ftruncate(j->dst, st.st_size) < 0) j->err = errno;
}

/*
 * One copy_file_range(2) between two open files at the offsets given (a client's
 * copy_file_range on the mount): the real call where the pair allows it, else up to
 * `len` bytes through pread/pwrite. A short count is a valid answer; the caller asks again.
 */
static void run_range(Job *j) {
  loff_t io = j->off_in, oo = j->off_out;
  size_t len = j->len < (int64_t)COPY_CHUNK ? (size_t)j->len : COPY_CHUNK;
  j->method = "range";
  ssize_t n = copy_file_range(j->src, &io, j->dst, &oo, len, 0);
  if (n < 0 && clone_unsupported(errno) && errno != EINVAL) {
    j->method = "readwrite";
    n = 0;
    for (ssize_t k; (size_t)n < len; n += k) {
      if ((k = rw_chunk(j, &io, &oo, len - (size_t)n)) <= 0) {
        if (k < 0 && n == 0) n = -1;
        break;
      }
    }
  }
  if (n < 0) j->err = errno;
  else j->bytes = n;
}

/* syncfs(2) of the file system holding fd (the upper layer's on a client's syncfs). */
static void run_syncfs(Job *j) { j->err = syncfs(j->src) < 0 ? errno : 0; }

static void run_umount(Job *j) { j->err = umount2(j->path, j->flags) < 0 ? errno : 0; }

static napi_value errno_error(napi_env env, int err) {
  napi_value code, msg, e;
  const char *name = strerrorname_np(err);
  napi_create_string_utf8(env, name ? name : "EIO", NAPI_AUTO_LENGTH, &code);
  napi_create_string_utf8(env, strerror(err), NAPI_AUTO_LENGTH, &msg);
  napi_create_error(env, code, msg, &e);
  napi_set_named_property(env, e, "errno", num(env, err));
  return e;
}

static napi_value copy_result(napi_env env, Job *j) {
  napi_value obj, m;
  napi_create_object(env, &obj);
  napi_create_string_utf8(env, j->method, NAPI_AUTO_LENGTH, &m);
  napi_set_named_property(env, obj, "bytes", num(env, (double)j->bytes));
  napi_set_named_property(env, obj, "method", m);
  return obj;
}

/* Back on the JS thread: settle the promise. env is NULL at teardown. */
static void job_done(napi_env env, napi_value cb, void *ctx, void *data) {
  Job *j = data;
  napi_value undef;
  (void)cb, (void)ctx;
  if (env && j->err) napi_reject_deferred(env, j->deferred, errno_error(env, j->err));
  else if (env && j->method) napi_resolve_deferred(env, j->deferred, copy_result(env, j));
  else if (env) napi_get_undefined(env, &undef), napi_resolve_deferred(env, j->deferred, undef);
  free(j->buf);
  free(j);
}

/* j belongs to the JS thread once queued (job_done frees it): keep tsfn in a local. */
static void settle(Job *j) {
  napi_threadsafe_function tsfn = j->tsfn;
  napi_call_threadsafe_function(tsfn, j, napi_tsfn_blocking);
  napi_release_threadsafe_function(tsfn, napi_tsfn_release);
}

static void finish(Job *j) {
  j->run(j);
  settle(j);
}

/* Our threads take no signals: they belong to Node's main thread, and EINTR would cut copies. */
static void block_signals(void) {
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, NULL);
}

static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pool_cv = PTHREAD_COND_INITIALIZER;
static Job *pool_head, *pool_tail;
static int pool_threads, pool_idle;

static Job *pool_take(void) {
  pthread_mutex_lock(&pool_mu);
  while (!pool_head) {
    pool_idle++;
    pthread_cond_wait(&pool_cv, &pool_mu);
    pool_idle--;
  }
  Job *j = pool_head;
  if (!(pool_head = j->next)) pool_tail = NULL;
  pthread_mutex_unlock(&pool_mu);
  return j;
}

static void *pool_worker(void *arg) {
  (void)arg;
  block_signals();
  for (;;) finish(pool_take());
  return NULL;
}

static void *solo_worker(void *arg) {
  block_signals();
  finish(arg);
  return NULL;
}

static int spawn(void *(*fn)(void *), void *arg) {
  pthread_t t;
  pthread_attr_t a;
  pthread_attr_init(&a);
  pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
  int e = pthread_create(&t, &a, fn, arg);
  pthread_attr_destroy(&a);
  return e;
}

/* Copies queue for a pool of at most COPY_POOL threads, started on demand. */
static int pool_submit(Job *j) {
  int e = 0;
  pthread_mutex_lock(&pool_mu);
  j->next = NULL;
  if (pool_tail) pool_tail->next = j;
  else pool_head = j;
  pool_tail = j;
  if (pool_idle) pthread_cond_signal(&pool_cv);
  else if (pool_threads < COPY_POOL && !(e = spawn(pool_worker, NULL))) pool_threads++;
  /* No thread at all will ever take it (then the queue held only j): the caller settles it. */
  if (!pool_threads) pool_head = pool_tail = NULL;
  else e = 0;
  pthread_mutex_unlock(&pool_mu);
  return e;
}

/* Creates the promise and its threadsafe function, then hands the job to a thread. */
static napi_value start_job(napi_env env, Job *j, bool solo) {
  napi_value promise, name;
  napi_create_promise(env, &j->deferred, &promise);
  napi_create_string_utf8(env, "stratafs_sys", NAPI_AUTO_LENGTH, &name);
  if (napi_create_threadsafe_function(env, NULL, NULL, name, 0, 1, NULL, NULL, NULL, job_done, &j->tsfn) != napi_ok) {
    napi_reject_deferred(env, j->deferred, errno_error(env, ENOMEM));
    free(j);
    return promise;
  }
  int e = solo ? spawn(solo_worker, j) : pool_submit(j);
  if (e) {
    j->err = e;
    settle(j);
  }
  return promise;
}

FN(copyData) {
  int src, dst;
  GET("ii", &src, &dst);
  Job *j = calloc(1, sizeof *j);
  if (!j) return NULL;
  j->src = src, j->dst = dst, j->run = run_copy;
  return start_job(env, j, false);
}

FN(copyRange) {
  int src, dst;
  int64_t off_in, off_out, len;
  GET("iLiLL", &src, &off_in, &dst, &off_out, &len);
  if (off_in < 0 || off_out < 0 || len < 0) return num(env, -EINVAL);
  Job *j = calloc(1, sizeof *j);
  if (!j) return NULL;
  j->src = src, j->dst = dst, j->off_in = off_in, j->off_out = off_out, j->len = len, j->run = run_range;
  return start_job(env, j, false);
}

/* On a thread of its own: a sync may wait long on the disk, and must not queue behind copy-ups. */
FN(syncfs) {
  int fd;
  GET("i", &fd);
  Job *j = calloc(1, sizeof *j);
  if (!j) return NULL;
  j->src = fd, j->run = run_syncfs;
  return start_job(env, j, true);
}

FN(umount2) {
  int flags;
  Job *j = calloc(1, sizeof *j);
  if (!j) return NULL;
  int e = get_args(env, info, "si", j->path, &flags);
  if (e) return free(j), e < 0 ? NULL : num(env, -e);
  j->flags = flags, j->run = run_umount;
  return start_job(env, j, true);
}

/* ---- memory --------------------------------------------------------------------- */

/*
 * dropExePages(): unmaps the pages of the node executable this process has mapped and not
 * written (clean, file-backed: the page cache keeps them, nothing is lost), so the daemon's
 * resident set holds only the code and data it touches from now on. Node's startup (the
 * dynamic linker's symbol tables, module loading, the snapshot) touches ~40 MiB of a 94 MiB
 * binary, most of it never again; the kernel maps 64 KiB around every fault from a warm page
 * cache. A mapping with anonymous (copied-on-write) pages, such as RELRO, is left alone:
 * MADV_DONTNEED would throw its private pages away. Returns the bytes unmapped, or -errno.
 */
FN(dropExePages) {
  (void)info;
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0) return num(env, -errno);
  exe[n] = 0;
  FILE *f = fopen("/proc/self/smaps", "re");
  if (!f) return num(env, -errno);
  enum { MAX_RANGES = 64 };
  struct { unsigned long lo, hi, rss; } ranges[MAX_RANGES];
  int count = 0;
  bool cur = false;
  unsigned long lo = 0, hi = 0, rss = 0, anon = 0;
  char line[PATH_MAX + 128];
  for (;;) {
    bool eof = !fgets(line, sizeof line, f);
    unsigned long a, b;
    char perms[8];
    int off = 0;
    bool head = !eof && sscanf(line, "%lx-%lx %7s %*s %*s %*s %n", &a, &b, perms, &off) == 3 && off > 0;
    if (eof || head) {
      if (cur && anon == 0 && rss > 0 && count < MAX_RANGES) ranges[count].lo = lo, ranges[count].hi = hi, ranges[count++].rss = rss;
      if (eof) break;
      char *path = line + off;
      path[strcspn(path, "\n")] = 0;
      cur = strcmp(path, exe) == 0 && perms[1] != 'w' && perms[3] == 'p';
      lo = a, hi = b, rss = 0, anon = 0;
      continue;
    }
    unsigned long kb;
    if (sscanf(line, "Rss: %lu kB", &kb) == 1) rss = kb;
    else if (sscanf(line, "Anonymous: %lu kB", &kb) == 1) anon = kb;
  }
  fclose(f);
  double dropped = 0;
  for (int i = 0; i < count; i++) {
    if (madvise((void *)ranges[i].lo, ranges[i].hi - ranges[i].lo, MADV_DONTNEED) == 0) dropped += (double)ranges[i].rss * 1024;
  }
  return num(env, dropped);
}

/* ---- module --------------------------------------------------------------------- */

static void set_const(napi_env env, napi_value obj, const char *name, double v) {
  napi_set_named_property(env, obj, name, num(env, v));
}

static napi_value make_constants(napi_env env) {
  napi_value c;
  napi_create_object(env, &c);
  set_const(env, c, "UTIME_NOW", UTIME_NOW), set_const(env, c, "UTIME_OMIT", UTIME_OMIT);
  set_const(env, c, "AT_REMOVEDIR", AT_REMOVEDIR);
  set_const(env, c, "RENAME_NOREPLACE", RENAME_NOREPLACE);
  set_const(env, c, "RENAME_EXCHANGE", RENAME_EXCHANGE);
  set_const(env, c, "RENAME_WHITEOUT", RENAME_WHITEOUT);
  set_const(env, c, "O_PATH", O_PATH), set_const(env, c, "O_DIRECTORY", O_DIRECTORY);
  set_const(env, c, "O_NOFOLLOW", O_NOFOLLOW), set_const(env, c, "O_TMPFILE", O_TMPFILE);
  set_const(env, c, "XATTR_CREATE", XATTR_CREATE), set_const(env, c, "XATTR_REPLACE", XATTR_REPLACE);
  set_const(env, c, "MNT_DETACH", MNT_DETACH), set_const(env, c, "MNT_FORCE", MNT_FORCE);
  set_const(env, c, "FALLOC_FL_KEEP_SIZE", FALLOC_FL_KEEP_SIZE);
  set_const(env, c, "FALLOC_FL_PUNCH_HOLE", FALLOC_FL_PUNCH_HOLE);
  set_const(env, c, "LOCK_SH", LOCK_SH), set_const(env, c, "LOCK_EX", LOCK_EX);
  set_const(env, c, "LOCK_UN", LOCK_UN), set_const(env, c, "LOCK_NB", LOCK_NB);
  set_const(env, c, "SEEK_DATA", SEEK_DATA), set_const(env, c, "SEEK_HOLE", SEEK_HOLE);
  /* The stat layout these sources write (sys-api.ts checks it: an addon built from older sources fails loudly). */
  set_const(env, c, "STAT_LEN", STAT_LEN);
  return c;
}

#define P(name) {#name, NULL, f_##name, NULL, NULL, NULL, napi_enumerable, NULL}

NAPI_MODULE_INIT() {
  napi_property_descriptor props[] = {
    P(openRoot), P(openat), P(close), P(lstatat), P(fstat), P(fstatvfs), P(mkdirat),
    P(mknodat), P(unlinkat), P(symlinkat), P(renameat2), P(linkat), P(readlinkat),
    P(fchownat), P(fchmodat), P(utimensat), P(futimens), P(ftruncate), P(fsync),
    P(fallocate), P(flock), P(readdirat), P(lgetxattrat), P(lsetxattrat),
    P(llistxattrat), P(lremovexattrat), P(fgetxattr), P(fsetxattr), P(flistxattr),
    P(fremovexattr), P(xattrViaProc), P(nameToHandle), P(copyData), P(umount2),
    P(dup2), P(pwrite), P(pioAligned), P(lseek), P(copyRange), P(syncfs), P(btimeat),
    P(dropExePages),
  };
  napi_define_properties(env, exports, sizeof props / sizeof *props, props);
  napi_set_named_property(env, exports, "constants", make_constants(env));
  return exports;
}
