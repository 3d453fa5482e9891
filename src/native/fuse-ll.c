/*
 * stratafs's FUSE server on libfuse 2.9's LOW-LEVEL API (native-notes/fuse-lowlevel.md).
 *
 * Why not fuse-native's high-level binding: there every request crosses four
 * threads (libfuse worker -> uv_async -> JS -> semaphore -> worker), and the
 * high-level API gives every *name* its own kernel inode, so hard links could
 * not share cached attributes. Here the /dev/fuse fd is polled by libuv on the
 * JS thread itself: one wakeup reads and dispatches requests, JS answers with
 * the reply functions below (at once or later), and node ids are whatever JS
 * says (one per overlay object).
 *
 * libfuse (the copy fuse-native ships in fuse-shared-library) still does the
 * protocol: mounting (mount(2) as root, fusermount otherwise), INIT, decoding
 * requests and encoding replies.
 *
 * Everything here runs on the JS thread: no locks.
 */
#define FUSE_USE_VERSION 29
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <fuse_lowlevel.h>
#include <node_api.h>
#include <uv.h>

#define CHECK(call) do { if ((call) != napi_ok) goto fail; } while (0)

/* ------------------------------------------------------------------------- */
/* handlers, by op */

enum {
  OP_INIT, OP_LOOKUP, OP_FORGET, OP_GETATTR, OP_SETATTR, OP_READLINK, OP_MKNOD, OP_MKDIR,
  OP_UNLINK, OP_RMDIR, OP_SYMLINK, OP_RENAME, OP_LINK, OP_OPEN, OP_READ, OP_WRITE, OP_FLUSH,
  OP_RELEASE, OP_FSYNC, OP_OPENDIR, OP_READDIR, OP_RELEASEDIR, OP_FSYNCDIR, OP_STATFS,
  OP_SETXATTR, OP_GETXATTR, OP_LISTXATTR, OP_REMOVEXATTR, OP_CREATE, OP_FALLOCATE, OP_COUNT
};

static const char *const op_names[OP_COUNT] = {
  "init", "lookup", "forget", "getattr", "setattr", "readlink", "mknod", "mkdir",
  "unlink", "rmdir", "symlink", "rename", "link", "open", "read", "write", "flush",
  "release", "fsync", "opendir", "readdir", "releasedir", "fsyncdir", "statfs",
  "setxattr", "getxattr", "listxattr", "removexattr", "create", "fallocate",
};

typedef struct session {
  napi_env env;
  struct fuse_session *se;
  struct fuse_chan *ch;
  char *mountpoint;
  char *buf;
  size_t bufsize;
  uv_poll_t poll;
  int polling;
  int ended;
  napi_ref handlers[OP_COUNT];
  napi_ref recv;     /* the handlers object (this) */
  napi_ref on_exit;
  napi_ref ctx_ref;  /* Int32Array [uid, gid, pid, umask] of the request being dispatched */
  int32_t *ctx;
  napi_async_context actx;
  napi_ref resource;
  napi_ref self;     /* keeps the wrapper alive while mounted */
  int dispatching, released, poll_closed, finalized;
} session;

/* ------------------------------------------------------------------------- */
/* pending requests: JS holds a small integer, not a pointer, so a double
 * reply or a reply after the session ended is refused instead of crashing */

typedef struct { fuse_req_t req; session *s; } slot;
static slot *slots;
static uint32_t nslots;
static uint32_t *free_ids;
static uint32_t nfree;

static int64_t take_slot(fuse_req_t req, session *s) {
  if (nfree == 0) {
    uint32_t n = nslots ? nslots * 2 : 256;
    slot *ns = realloc(slots, n * sizeof *ns);
    uint32_t *nf = realloc(free_ids, n * sizeof *nf);
    if (!ns || !nf) { if (ns) slots = ns; if (nf) free_ids = nf; return -1; }
    slots = ns; free_ids = nf;
    for (uint32_t i = n; i > nslots; i--) { slots[i - 1].req = NULL; free_ids[nfree++] = i - 1; }
    nslots = n;
  }
  uint32_t id = free_ids[--nfree];
  slots[id].req = req;
  slots[id].s = s;
  return id;
}

/* the request behind id, released; NULL if none is pending under it */
static fuse_req_t release_slot(napi_env env, napi_value v) {
  int64_t id;
  if (napi_get_value_int64(env, v, &id) != napi_ok || id < 0 || (uint64_t) id >= nslots) return NULL;
  fuse_req_t req = slots[id].req;
  if (!req) return NULL;
  slots[id].req = NULL;
  free_ids[nfree++] = (uint32_t) id;
  return req;
}

/* session over: its requests can no longer be answered (libfuse frees them) */
static void drop_slots(session *s) {
  for (uint32_t i = 0; i < nslots; i++) {
    if (slots[i].req && slots[i].s == s) { slots[i].req = NULL; free_ids[nfree++] = i; }
  }
}

/* ------------------------------------------------------------------------- */
/* calling JS */

static napi_value num(napi_env env, double d) {
  napi_value v;
  napi_create_double(env, d, &v);
  return v;
}

static napi_value str(napi_env env, const char *s) {
  napi_value v;
  napi_create_string_latin1(env, s, NAPI_AUTO_LENGTH, &v);
  return v;
}

static void report_exception(napi_env env, const char *op) {
  napi_value exc, msg;
  char text[512] = "";
  size_t len;
  if (napi_get_and_clear_last_exception(env, &exc) != napi_ok) return;
  if (napi_coerce_to_string(env, exc, &msg) == napi_ok) napi_get_value_string_utf8(env, msg, text, sizeof text, &len);
  fprintf(stderr, "stratafs: %s handler threw: %s\n", op, text);
}

/*
 * Calls handler `op` with argv[0] = the request's id (filled here) and the
 * other arguments as given. A handler that throws gets the request answered EIO.
 */
static void call(session *s, int op, fuse_req_t req, size_t argc, napi_value *argv) {
  napi_env env = s->env;
  napi_value fn, recv;
  int64_t id = -1;
  if (req) {
    const struct fuse_ctx *c = fuse_req_ctx(req);
    s->ctx[0] = (int32_t) c->uid; s->ctx[1] = (int32_t) c->gid;
    s->ctx[2] = (int32_t) c->pid; s->ctx[3] = (int32_t) c->umask;
    id = take_slot(req, s);
    if (id < 0) { fuse_reply_err(req, ENOMEM); return; }
    argv[0] = num(env, (double) id);
  }
  if (napi_get_reference_value(env, s->handlers[op], &fn) != napi_ok ||
      napi_get_reference_value(env, s->recv, &recv) != napi_ok ||
      napi_call_function(env, recv, fn, argc, argv, NULL) != napi_ok) {
    report_exception(env, op_names[op]);
    if (req && slots[id].req == req) {
      slots[id].req = NULL;
      free_ids[nfree++] = (uint32_t) id;
      fuse_reply_err(req, EIO);
    }
  }
}

static double fh_of(struct fuse_file_info *fi) { return fi ? (double) fi->fh : -1; }

/* ------------------------------------------------------------------------- */
/* libfuse callbacks: each hands its arguments to the JS handler of the same name */

#define S ((session *) fuse_req_userdata(req))

static void ll_init(void *userdata, struct fuse_conn_info *conn) {
  session *s = userdata;
  napi_value argv[1];
  /* Keep the kernel's umask handling (no FUSE_CAP_DONT_MASK) and its O_TRUNC setattr (no ATOMIC_O_TRUNC). */
  call(s, OP_INIT, NULL, 0, argv);
}

static void ll_lookup(fuse_req_t req, fuse_ino_t parent, const char *name) {
  napi_value a[3]; a[1] = num(S->env, parent); a[2] = str(S->env, name);
  call(S, OP_LOOKUP, req, 3, a);
}

static void forget_one(session *s, fuse_ino_t ino, uint64_t n) {
  napi_value a[2]; a[0] = num(s->env, ino); a[1] = num(s->env, (double) n);
  call(s, OP_FORGET, NULL, 2, a);
}

static void ll_forget(fuse_req_t req, fuse_ino_t ino, unsigned long nlookup) {
  forget_one(S, ino, nlookup);
  fuse_reply_none(req);
}

static void ll_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *f) {
  for (size_t i = 0; i < count; i++) forget_one(S, f[i].ino, f[i].nlookup);
  fuse_reply_none(req);
}

static void ll_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  napi_value a[3]; a[1] = num(S->env, ino); a[2] = num(S->env, fh_of(fi));
  call(S, OP_GETATTR, req, 3, a);
}

/* A file offset: a number below 2^53, a bigint from there (a double would round it). */
static napi_value offset_of(napi_env env, off_t off) {
  napi_value v;
  if (off < ((off_t) 1 << 53)) return num(env, (double) off);
  napi_create_bigint_int64(env, (int64_t) off, &v);
  return v;
}

static void ll_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *st, int valid, struct fuse_file_info *fi) {
  napi_env env = S->env;
  napi_value a[12];
  a[1] = num(env, ino); a[2] = num(env, valid);
  a[3] = num(env, st->st_mode); a[4] = num(env, st->st_uid); a[5] = num(env, st->st_gid);
  a[6] = offset_of(env, st->st_size);
  a[7] = num(env, (double) st->st_atim.tv_sec); a[8] = num(env, st->st_atim.tv_nsec);
  a[9] = num(env, (double) st->st_mtim.tv_sec); a[10] = num(env, st->st_mtim.tv_nsec);
  a[11] = num(env, fh_of(fi));
  call(S, OP_SETATTR, req, 12, a);
}

static void ll_readlink(fuse_req_t req, fuse_ino_t ino) {
  napi_value a[2]; a[1] = num(S->env, ino);
  call(S, OP_READLINK, req, 2, a);
}

static void ll_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev) {
  napi_value a[5]; a[1] = num(S->env, parent); a[2] = str(S->env, name); a[3] = num(S->env, mode); a[4] = num(S->env, (double) rdev);
  call(S, OP_MKNOD, req, 5, a);
}

static void ll_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode) {
  napi_value a[4]; a[1] = num(S->env, parent); a[2] = str(S->env, name); a[3] = num(S->env, mode);
  call(S, OP_MKDIR, req, 4, a);
}

static void ll_unlink(fuse_req_t req, fuse_ino_t parent, const char *name) {
  napi_value a[3]; a[1] = num(S->env, parent); a[2] = str(S->env, name);
  call(S, OP_UNLINK, req, 3, a);
}

static void ll_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name) {
  napi_value a[3]; a[1] = num(S->env, parent); a[2] = str(S->env, name);
  call(S, OP_RMDIR, req, 3, a);
}

static void ll_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name) {
  napi_value a[4]; a[1] = str(S->env, link); a[2] = num(S->env, parent); a[3] = str(S->env, name);
  call(S, OP_SYMLINK, req, 4, a);
}

static void ll_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent, const char *newname) {
  napi_value a[5]; a[1] = num(S->env, parent); a[2] = str(S->env, name); a[3] = num(S->env, newparent); a[4] = str(S->env, newname);
  call(S, OP_RENAME, req, 5, a);
}

static void ll_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname) {
  napi_value a[4]; a[1] = num(S->env, ino); a[2] = num(S->env, newparent); a[3] = str(S->env, newname);
  call(S, OP_LINK, req, 4, a);
}

static void ll_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  napi_value a[3]; a[1] = num(S->env, ino); a[2] = num(S->env, fi->flags);
  call(S, OP_OPEN, req, 3, a);
}

static void ll_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  napi_value a[5]; a[1] = num(S->env, ino); a[2] = num(S->env, (double) size); a[3] = offset_of(S->env, off); a[4] = num(S->env, fh_of(fi));
  call(S, OP_READ, req, 5, a);
}

/* `buf` points into the receive buffer, which the next request overwrites: JS gets a copy. */
static void ll_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off, struct fuse_file_info *fi) {
  napi_value a[5];
  void *data;
  if (napi_create_buffer_copy(S->env, size, buf, &data, &a[2]) != napi_ok) { fuse_reply_err(req, ENOMEM); return; }
  a[1] = num(S->env, ino); a[3] = offset_of(S->env, off); a[4] = num(S->env, fh_of(fi));
  call(S, OP_WRITE, req, 5, a);
}

static void ll_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  napi_value a[3]; a[1] = num(S->env, ino); a[2] = num(S->env, fh_of(fi));
  call(S, OP_FLUSH, req, 3, a);
}

static void ll_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  napi_value a[3]; a[1] = num(S->env, ino); a[2] = num(S->env, fh_of(fi));
  call(S, OP_RELEASE, req, 3, a);
}

static void ll_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi) {
  napi_value a[4]; a[1] = num(S->env, ino); a[2] = num(S->env, datasync); a[3] = num(S->env, fh_of(fi));
  call(S, OP_FSYNC, req, 4, a);
}

static void ll_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  napi_value a[3]; a[1] = num(S->env, ino); a[2] = num(S->env, fi->flags);
  call(S, OP_OPENDIR, req, 3, a);
}

static void ll_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  napi_value a[5]; a[1] = num(S->env, ino); a[2] = num(S->env, (double) size); a[3] = num(S->env, (double) off); a[4] = num(S->env, fh_of(fi));
  call(S, OP_READDIR, req, 5, a);
}

static void ll_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  napi_value a[3]; a[1] = num(S->env, ino); a[2] = num(S->env, fh_of(fi));
  call(S, OP_RELEASEDIR, req, 3, a);
}

static void ll_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi) {
  napi_value a[4]; a[1] = num(S->env, ino); a[2] = num(S->env, datasync); a[3] = num(S->env, fh_of(fi));
  call(S, OP_FSYNCDIR, req, 4, a);
}

static void ll_statfs(fuse_req_t req, fuse_ino_t ino) {
  napi_value a[2]; a[1] = num(S->env, ino);
  call(S, OP_STATFS, req, 2, a);
}

static void ll_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value, size_t size, int flags) {
  napi_value a[5];
  void *data;
  if (napi_create_buffer_copy(S->env, size, value, &data, &a[3]) != napi_ok) { fuse_reply_err(req, ENOMEM); return; }
  a[1] = num(S->env, ino); a[2] = str(S->env, name); a[4] = num(S->env, flags);
  call(S, OP_SETXATTR, req, 5, a);
}

static void ll_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size) {
  napi_value a[4]; a[1] = num(S->env, ino); a[2] = str(S->env, name); a[3] = num(S->env, (double) size);
  call(S, OP_GETXATTR, req, 4, a);
}

static void ll_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  napi_value a[3]; a[1] = num(S->env, ino); a[2] = num(S->env, (double) size);
  call(S, OP_LISTXATTR, req, 3, a);
}

static void ll_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name) {
  napi_value a[3]; a[1] = num(S->env, ino); a[2] = str(S->env, name);
  call(S, OP_REMOVEXATTR, req, 3, a);
}

static void ll_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, struct fuse_file_info *fi) {
  napi_value a[5]; a[1] = num(S->env, parent); a[2] = str(S->env, name); a[3] = num(S->env, mode); a[4] = num(S->env, fi->flags);
  call(S, OP_CREATE, req, 5, a);
}

static void ll_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len, struct fuse_file_info *fi) {
  napi_value a[6]; a[1] = num(S->env, ino); a[2] = num(S->env, mode); a[3] = num(S->env, (double) off); a[4] = num(S->env, (double) len); a[5] = num(S->env, fh_of(fi));
  call(S, OP_FALLOCATE, req, 6, a);
}

#undef S

/* access is left out on purpose: libfuse answers ENOSYS once and the kernel stops asking (permission checks are the kernel's, from the attributes). */
static const struct fuse_lowlevel_ops ll_ops = {
  .init = ll_init, .lookup = ll_lookup, .forget = ll_forget, .forget_multi = ll_forget_multi,
  .getattr = ll_getattr, .setattr = ll_setattr, .readlink = ll_readlink, .mknod = ll_mknod,
  .mkdir = ll_mkdir, .unlink = ll_unlink, .rmdir = ll_rmdir, .symlink = ll_symlink,
  .rename = ll_rename, .link = ll_link, .open = ll_open, .read = ll_read, .write = ll_write,
  .flush = ll_flush, .release = ll_release, .fsync = ll_fsync, .opendir = ll_opendir,
  .readdir = ll_readdir, .releasedir = ll_releasedir, .fsyncdir = ll_fsyncdir, .statfs = ll_statfs,
  .setxattr = ll_setxattr, .getxattr = ll_getxattr, .listxattr = ll_listxattr,
  .removexattr = ll_removexattr, .create = ll_create, .fallocate = ll_fallocate,
};

/* ------------------------------------------------------------------------- */
/* the loop: /dev/fuse readable -> read and dispatch what is there */

/* requests handled per wakeup before other JS work (timers, copy-up completions) gets a turn */
#define BATCH 64

/* the session struct outlives both the libuv handle and the JS wrapper: freed when both are gone */
static void maybe_free(session *s) {
  if (!s->poll_closed || !s->finalized) return;
  free(s->buf);
  free(s->mountpoint);
  free(s);
}

static void poll_closed(uv_handle_t *h) {
  session *s = h->data;
  s->poll_closed = 1;
  maybe_free(s);
}

/* FUSE side over: no more reads, pending requests void, /dev/fuse closed, JS told */
static void end_session(session *s) {
  napi_env env = s->env;
  napi_value fn, recv;
  if (s->ended) return;
  s->ended = 1;
  drop_slots(s);
  if (s->polling) { uv_poll_stop(&s->poll); s->polling = 0; }
  fuse_session_destroy(s->se); /* closes /dev/fuse: the kernel ends the connection if still mounted */
  s->se = NULL;
  if (napi_get_reference_value(env, s->on_exit, &fn) == napi_ok && napi_get_reference_value(env, s->recv, &recv) == napi_ok) {
    if (napi_call_function(env, recv, fn, 0, NULL, NULL) != napi_ok) report_exception(env, "onExit");
  }
}

/* JS side over: drop our references (never while on_readable still uses them) */
static void release_session(session *s) {
  napi_env env = s->env;
  if (s->released) return;
  s->released = 1;
  for (int i = 0; i < OP_COUNT; i++) if (s->handlers[i]) napi_delete_reference(env, s->handlers[i]);
  napi_delete_reference(env, s->recv);
  napi_delete_reference(env, s->on_exit);
  napi_delete_reference(env, s->ctx_ref);
  napi_delete_reference(env, s->resource);
  napi_async_destroy(env, s->actx);
  uv_close((uv_handle_t *) &s->poll, poll_closed);
  napi_delete_reference(env, s->self);
}

static void on_readable(uv_poll_t *h, int status, int events) {
  session *s = h->data;
  napi_env env = s->env;
  napi_handle_scope hs;
  napi_callback_scope cs;
  napi_value resource;
  int over = status < 0;
  if (s->ended || napi_open_handle_scope(env, &hs) != napi_ok) return;
  napi_get_reference_value(env, s->resource, &resource);
  /* a callback scope: promise continuations of the handlers (most replies) run when it closes */
  napi_open_callback_scope(env, resource, s->actx, &cs);
  s->dispatching = 1;
  for (int i = 0; i < BATCH && !over && !s->ended; i++) {
    struct fuse_chan *ch = s->ch;
    int res = fuse_chan_recv(&ch, s->buf, s->bufsize);
    if (res == -EAGAIN || res == -EINTR) break;
    if (res <= 0) { over = 1; break; } /* 0: unmounted (ENODEV) or exited */
    fuse_session_process(s->se, s->buf, (size_t) res, ch);
    if (fuse_session_exited(s->se)) over = 1;
  }
  if (over) end_session(s);
  s->dispatching = 0;
  napi_close_callback_scope(env, cs);
  if (s->ended) release_session(s);
  napi_close_handle_scope(env, hs);
}

/* ------------------------------------------------------------------------- */
/* exported: mount, close, replies */

static char *latin1_arg(napi_env env, napi_value v) {
  size_t len;
  if (napi_get_value_string_latin1(env, v, NULL, 0, &len) != napi_ok) return NULL;
  char *s = malloc(len + 1);
  if (!s) return NULL;
  napi_get_value_string_latin1(env, v, s, len + 1, &len);
  return s;
}

static napi_value throw_err(napi_env env, const char *msg) {
  napi_throw_error(env, NULL, msg);
  return NULL;
}

static void session_finalize(napi_env env, void *data, void *hint) {
  session *s = data;
  s->finalized = 1;
  maybe_free(s);
}

/*
 * mount(mountpoint, args, handlers, ctx, onExit) -> session
 *   args: libfuse argv (["stratafs", "-o", "opts"]); handlers: object with one
 *   function per op name; ctx: Int32Array(4) filled with the caller of each request.
 */
static napi_value ll_mount(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5], result, name;
  napi_valuetype t;
  uint32_t nargs = 0;
  struct fuse_args fa = FUSE_ARGS_INIT(0, NULL);
  session *s = NULL;
  char *mnt = NULL;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 5) return throw_err(env, "mount(mountpoint, args, handlers, ctx, onExit)");
  s = calloc(1, sizeof *s);
  if (!s) return throw_err(env, "out of memory");
  s->env = env;
  mnt = latin1_arg(env, argv[0]);
  if (!mnt) goto fail;
  CHECK(napi_get_array_length(env, argv[1], &nargs));
  for (uint32_t i = 0; i < nargs; i++) {
    napi_value e;
    CHECK(napi_get_element(env, argv[1], i, &e));
    char *a = latin1_arg(env, e);
    if (!a) goto fail;
    fuse_opt_add_arg(&fa, a);
    free(a);
  }
  for (int i = 0; i < OP_COUNT; i++) {
    napi_value fn;
    CHECK(napi_get_named_property(env, argv[2], op_names[i], &fn));
    CHECK(napi_typeof(env, fn, &t));
    if (t != napi_function) { fuse_opt_free_args(&fa); free(mnt); free(s); return throw_err(env, "a handler is missing"); }
    CHECK(napi_create_reference(env, fn, 1, &s->handlers[i]));
  }
  {
    napi_typedarray_type tt;
    size_t len;
    void *data;
    napi_value ab;
    size_t off;
    CHECK(napi_get_typedarray_info(env, argv[3], &tt, &len, &data, &ab, &off));
    if (tt != napi_int32_array || len < 4) { fuse_opt_free_args(&fa); free(mnt); free(s); return throw_err(env, "ctx must be an Int32Array(4)"); }
    s->ctx = data;
  }
  CHECK(napi_create_reference(env, argv[2], 1, &s->recv));
  CHECK(napi_create_reference(env, argv[3], 1, &s->ctx_ref));
  CHECK(napi_create_reference(env, argv[4], 1, &s->on_exit));
  CHECK(napi_create_string_utf8(env, "stratafs-fuse", NAPI_AUTO_LENGTH, &name));
  CHECK(napi_async_init(env, argv[2], name, &s->actx));
  CHECK(napi_create_reference(env, argv[2], 1, &s->resource));

  s->ch = fuse_mount(mnt, &fa);
  if (!s->ch) {
    fuse_opt_free_args(&fa);
    free(mnt);
    return throw_err(env, "fuse_mount failed (libfuse printed why on stderr)");
  }
  s->se = fuse_lowlevel_new(&fa, &ll_ops, sizeof ll_ops, s);
  fuse_opt_free_args(&fa);
  if (!s->se) {
    fuse_unmount(mnt, s->ch);
    free(mnt);
    return throw_err(env, "fuse_lowlevel_new failed (libfuse printed why on stderr)");
  }
  fuse_session_add_chan(s->se, s->ch);
  s->mountpoint = mnt;
  s->bufsize = fuse_chan_bufsize(s->ch);
  s->buf = malloc(s->bufsize);
  int fd = fuse_chan_fd(s->ch);
  /* nonblocking: a wakeup reads until EAGAIN and never blocks the loop */
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  uv_loop_t *loop;
  CHECK(napi_get_uv_event_loop(env, &loop));
  uv_poll_init(loop, &s->poll, fd);
  s->poll.data = s;
  uv_poll_start(&s->poll, UV_READABLE, on_readable);
  s->polling = 1;
  CHECK(napi_create_external(env, s, session_finalize, NULL, &result));
  CHECK(napi_create_reference(env, result, 1, &s->self));
  return result;
fail:
  return throw_err(env, "fuse-ll mount: bad arguments");
}

static session *session_arg(napi_env env, napi_value v) {
  void *p;
  if (napi_get_value_external(env, v, &p) != napi_ok) return NULL;
  return p;
}

/*
 * close(session, unmount): end the session now. With unmount, libfuse detaches
 * the mount (umount2 MNT_DETACH as root, fusermount -uz otherwise) after
 * closing /dev/fuse, so it never waits for this thread. Used when a mount
 * has to be abandoned; a normal unmount goes through umount2 and the session
 * ends by itself when the kernel says ENODEV.
 */
static napi_value ll_close(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  bool unmount = false;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  session *s = session_arg(env, argv[0]);
  if (!s) return throw_err(env, "close(session, unmount)");
  if (argc > 1) napi_get_value_bool(env, argv[1], &unmount);
  if (s->ended) return NULL;
  if (unmount) {
    /* fuse_unmount closes the channel fd; take the channel out of the session first */
    if (s->polling) { uv_poll_stop(&s->poll); s->polling = 0; }
    fuse_session_remove_chan(s->ch);
    fuse_unmount(s->mountpoint, s->ch);
    s->ch = NULL;
  }
  end_session(s);
  if (!s->dispatching) release_session(s);
  return NULL;
}

#define REPLY_ARGS(n)                                   \
  size_t argc = n;                                      \
  napi_value argv[n];                                   \
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL); \
  if (argc < n) return throw_err(env, "reply: too few arguments"); \
  fuse_req_t req = release_slot(env, argv[0]);          \
  if (!req) return NULL

static double get_num(napi_env env, napi_value v) {
  double d = 0;
  napi_get_value_double(env, v, &d);
  return d;
}

static const double *f64_arg(napi_env env, napi_value v, size_t min) {
  napi_typedarray_type t;
  size_t len, off;
  void *data;
  napi_value ab;
  if (napi_get_typedarray_info(env, v, &t, &len, &data, &ab, &off) != napi_ok) return NULL;
  if (t != napi_float64_array || len < min) return NULL;
  return data;
}

/* StatIdx (src/native/sys-api.ts): st_ino and st_size cross as exact 32-bit halves at 16-19. */
#define STAT_LEN 20

static uint64_t u64_of(double hi, double lo) { return ((uint64_t) (uint32_t) hi << 32) | (uint32_t) lo; }

/* Float64Array in StatIdx order -> struct stat */
static void to_stat(const double *d, struct stat *st) {
  memset(st, 0, sizeof *st);
  st->st_dev = (dev_t) d[0]; st->st_ino = (ino_t) u64_of(d[16], d[17]); st->st_mode = (mode_t) d[2];
  st->st_nlink = (nlink_t) d[3]; st->st_uid = (uid_t) d[4]; st->st_gid = (gid_t) d[5];
  st->st_rdev = (dev_t) d[6]; st->st_size = (off_t) u64_of(d[18], d[19]); st->st_blksize = (blksize_t) d[8];
  st->st_blocks = (blkcnt_t) d[9];
  st->st_atim.tv_sec = (time_t) d[10]; st->st_atim.tv_nsec = (long) d[11];
  st->st_mtim.tv_sec = (time_t) d[12]; st->st_mtim.tv_nsec = (long) d[13];
  st->st_ctim.tv_sec = (time_t) d[14]; st->st_ctim.tv_nsec = (long) d[15];
}

/* replyErr(id, errno): errno 0 is success for ops with no data (unlink, flush, release, ...) */
static napi_value reply_err(napi_env env, napi_callback_info info) {
  REPLY_ARGS(2);
  fuse_reply_err(req, (int) get_num(env, argv[1]));
  return NULL;
}

static int fill_entry(napi_env env, napi_value *v, struct fuse_entry_param *e) {
  memset(e, 0, sizeof *e);
  e->ino = (fuse_ino_t) get_num(env, v[0]);
  e->generation = (unsigned long) get_num(env, v[1]);
  if (e->ino != 0) {
    const double *d = f64_arg(env, v[2], STAT_LEN);
    if (!d) return -1;
    to_stat(d, &e->attr);
  }
  e->attr_timeout = get_num(env, v[3]);
  e->entry_timeout = get_num(env, v[4]);
  return 0;
}

/* replyEntry(id, ino, generation, attr, attrTimeout, entryTimeout): ino 0 caches a negative entry */
static napi_value reply_entry(napi_env env, napi_callback_info info) {
  struct fuse_entry_param e;
  REPLY_ARGS(6);
  if (fill_entry(env, argv + 1, &e) < 0) { fuse_reply_err(req, EIO); return throw_err(env, "replyEntry: attr must be a Float64Array(20)"); }
  fuse_reply_entry(req, &e);
  return NULL;
}

static void fill_open(napi_env env, napi_value fh, napi_value flags, struct fuse_file_info *fi) {
  uint32_t f = (uint32_t) get_num(env, flags);
  memset(fi, 0, sizeof *fi);
  fi->fh = (uint64_t) get_num(env, fh);
  fi->keep_cache = (f & 1) != 0;
  fi->direct_io = (f & 2) != 0;
}

/* replyCreate(id, ino, generation, attr, attrTimeout, entryTimeout, fh, openFlags) */
static napi_value reply_create(napi_env env, napi_callback_info info) {
  struct fuse_entry_param e;
  struct fuse_file_info fi;
  REPLY_ARGS(8);
  if (fill_entry(env, argv + 1, &e) < 0) { fuse_reply_err(req, EIO); return throw_err(env, "replyCreate: attr must be a Float64Array(20)"); }
  fill_open(env, argv[6], argv[7], &fi);
  fuse_reply_create(req, &e, &fi);
  return NULL;
}

/* replyAttr(id, attr, timeout) */
static napi_value reply_attr(napi_env env, napi_callback_info info) {
  struct stat st;
  REPLY_ARGS(3);
  const double *d = f64_arg(env, argv[1], STAT_LEN);
  if (!d) { fuse_reply_err(req, EIO); return throw_err(env, "replyAttr: attr must be a Float64Array(20)"); }
  to_stat(d, &st);
  fuse_reply_attr(req, &st, get_num(env, argv[2]));
  return NULL;
}

/* replyOpen(id, fh, openFlags): openFlags bit 1 keep_cache, bit 2 direct_io */
static napi_value reply_open(napi_env env, napi_callback_info info) {
  struct fuse_file_info fi;
  REPLY_ARGS(3);
  fill_open(env, argv[1], argv[2], &fi);
  fuse_reply_open(req, &fi);
  return NULL;
}

/* replyReadlink(id, target) */
static napi_value reply_readlink(napi_env env, napi_callback_info info) {
  REPLY_ARGS(2);
  char *t = latin1_arg(env, argv[1]);
  if (!t) { fuse_reply_err(req, ENOMEM); return NULL; }
  fuse_reply_readlink(req, t);
  free(t);
  return NULL;
}

/* replyBuf(id, buffer, length): read data, an xattr value, a listxattr list */
static napi_value reply_buf(napi_env env, napi_callback_info info) {
  void *data;
  size_t len;
  REPLY_ARGS(3);
  if (napi_get_buffer_info(env, argv[1], &data, &len) != napi_ok) { fuse_reply_err(req, EIO); return throw_err(env, "replyBuf: not a Buffer"); }
  double n = get_num(env, argv[2]);
  if (n < 0 || n > (double) len) n = (double) len;
  fuse_reply_buf(req, data, (size_t) n);
  return NULL;
}

/* replyWrite(id, count) */
static napi_value reply_write(napi_env env, napi_callback_info info) {
  REPLY_ARGS(2);
  fuse_reply_write(req, (size_t) get_num(env, argv[1]));
  return NULL;
}

/* replyXattr(id, size): the size asked for with a zero-size getxattr/listxattr */
static napi_value reply_xattr(napi_env env, napi_callback_info info) {
  REPLY_ARGS(2);
  fuse_reply_xattr(req, (size_t) get_num(env, argv[1]));
  return NULL;
}

/* replyStatfs(id, statvfs Float64Array in StatvfsIdx order) */
static napi_value reply_statfs(napi_env env, napi_callback_info info) {
  struct statvfs v;
  REPLY_ARGS(2);
  const double *d = f64_arg(env, argv[1], 11);
  if (!d) { fuse_reply_err(req, EIO); return throw_err(env, "replyStatfs: need a Float64Array(11)"); }
  memset(&v, 0, sizeof v);
  v.f_bsize = (unsigned long) d[0]; v.f_frsize = (unsigned long) d[1]; v.f_blocks = (fsblkcnt_t) d[2];
  v.f_bfree = (fsblkcnt_t) d[3]; v.f_bavail = (fsblkcnt_t) d[4]; v.f_files = (fsfilcnt_t) d[5];
  v.f_ffree = (fsfilcnt_t) d[6]; v.f_favail = (fsfilcnt_t) d[7]; v.f_fsid = (unsigned long) d[8];
  v.f_flag = (unsigned long) d[9]; v.f_namemax = (unsigned long) d[10];
  fuse_reply_statfs(req, &v);
  return NULL;
}

/*
 * replyDir(id, size, firstOffset, names, modeIno) -> entries sent
 *   names[i] gets directory offset firstOffset+i+1 (the offset of the entry
 *   after it); modeIno is a Float64Array of [mode, inoHi, inoLo] triples (the
 *   inode number exact as two 32-bit halves). As many entries
 *   as fit in `size` bytes are sent; the kernel asks again from the next offset.
 */
static napi_value reply_dir(napi_env env, napi_callback_info info) {
  REPLY_ARGS(5);
  size_t size = (size_t) get_num(env, argv[1]);
  double first = get_num(env, argv[2]);
  uint32_t n = 0;
  const double *mi;
  char *buf = NULL;
  size_t pos = 0;
  uint32_t i = 0;
  char name[1024];
  napi_get_array_length(env, argv[3], &n);
  mi = f64_arg(env, argv[4], 3 * (size_t) n);
  if (!mi) { fuse_reply_err(req, EIO); return throw_err(env, "replyDir: modeIno must hold 3 numbers per name"); }
  buf = malloc(size ? size : 1);
  if (!buf) { fuse_reply_err(req, ENOMEM); return NULL; }
  for (; i < n; i++) {
    napi_value e;
    size_t len;
    struct stat st;
    if (napi_get_element(env, argv[3], i, &e) != napi_ok ||
        napi_get_value_string_latin1(env, e, name, sizeof name, &len) != napi_ok) break;
    memset(&st, 0, sizeof st);
    st.st_mode = (mode_t) mi[3 * i];
    st.st_ino = (ino_t) u64_of(mi[3 * i + 1], mi[3 * i + 2]);
    size_t need = fuse_add_direntry(req, NULL, 0, name, NULL, 0);
    if (pos + need > size) break;
    fuse_add_direntry(req, buf + pos, size - pos, name, &st, (off_t) (first + i + 1));
    pos += need;
  }
  fuse_reply_buf(req, buf, pos);
  free(buf);
  return num(env, i);
}

/*
 * invalAttr(session, ino): drop the kernel's cached attributes of a node (not
 * its pages): for changes the kernel cannot know of, such as a directory
 * copied up by an operation on a name below it, or by one that then failed.
 * Only attributes: invalidating an entry would take the directory's lock,
 * which the request that caused the change may still hold.
 */
static napi_value ll_inval_attr(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  session *s = argc == 2 ? session_arg(env, argv[0]) : NULL;
  if (!s) return throw_err(env, "invalAttr(session, ino)");
  if (s->ended || !s->ch) return num(env, -ENOTCONN);
  return num(env, fuse_lowlevel_notify_inval_inode(s->ch, (fuse_ino_t) get_num(env, argv[1]), -1, 0));
}

/* pending(): requests handed to JS and not answered yet (for stats and leak tests) */
static napi_value ll_pending(napi_env env, napi_callback_info info) {
  return num(env, (double) (nslots - nfree));
}

static napi_value init(napi_env env, napi_value exports) {
  static const struct { const char *name; napi_callback fn; } fns[] = {
    { "mount", ll_mount }, { "close", ll_close }, { "pending", ll_pending }, { "invalAttr", ll_inval_attr },
    { "replyErr", reply_err }, { "replyEntry", reply_entry }, { "replyCreate", reply_create },
    { "replyAttr", reply_attr }, { "replyOpen", reply_open }, { "replyReadlink", reply_readlink },
    { "replyBuf", reply_buf }, { "replyWrite", reply_write }, { "replyXattr", reply_xattr },
    { "replyStatfs", reply_statfs }, { "replyDir", reply_dir },
  };
  napi_value len;
  /* The stat layout these sources read (cli/serve.ts checks it: an addon built from older sources fails loudly). */
  if (napi_create_uint32(env, STAT_LEN, &len) != napi_ok || napi_set_named_property(env, exports, "statLen", len) != napi_ok) return NULL;
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    napi_value f;
    if (napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].fn, NULL, &f) != napi_ok ||
        napi_set_named_property(env, exports, fns[i].name, f) != napi_ok) return NULL;
  }
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
