/*
 * The transport of stratafs's own FUSE server (native-notes/fuse-server.md):
 * /dev/fuse opened, mounted with mount(2), polled on the JS thread, requests
 * read in batches into one buffer that JS owns, replies written with one
 * write(2) each. No libfuse: the protocol itself (INIT, decoding requests,
 * encoding replies) is TypeScript (src/fuse/kernel/).
 *
 * Everything here runs on the JS thread, but for two helper threads per session that
 * write the notifications which take locks in the kernel (notify(), below).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <pthread.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <node_api.h>
#include <uv.h>

/*
 * Notifications that take inode locks in the kernel (INVAL_ENTRY and DELETE take the
 * parent directory's i_rwsem, INVAL_INODE with an offset locks the pages) are written
 * by this thread, never by the JS thread: a request the JS thread has not answered yet
 * may hold that lock (a LOOKUP holds its directory shared, a CREATE exclusive), and the
 * JS thread blocked in write(2) would never answer it.
 *
 * Two lanes, each a thread with its own queue, because a lane writes in order and some
 * answers wait in one (server.ts replyAfterDrop: a LOOKUP answer behind the drop of a
 * symlink's pages). LANE_ENTRY holds only INVAL_ENTRY/DELETE, which wait for a directory's
 * i_rwsem; LANE_PAGES the page drops and the answers that follow them. In one queue, an
 * INVAL_ENTRY waiting for a directory that a LOOKUP's caller holds shared sat in front of
 * that very LOOKUP's answer: every client of the mount hung (the helper in
 * fuse_reverse_inval_entry; load.test in CI, reproduced by renaming symlinks in the upper
 * behind the mount while another process stats them). A page drop waits only for a
 * READLINK that the JS thread answers directly. Each thread owns a dup of the
 * device fd (never a number that close() could hand to something else) and frees
 * itself once told to stop.
 */
enum { LANE_ENTRY = 0, LANE_PAGES = 1, LANE_COUNT = 2 };
typedef struct note { struct note *next; size_t len; char data[]; } note;
typedef struct notifier {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  note *head, *tail;
  int fd, stop;
  /* written, and failed (last errno in last_err): read under mu */
  double written, failed;
  int last_err;
} notifier;

static void *notifier_main(void *arg) {
  notifier *nt = arg;
  pthread_mutex_lock(&nt->mu);
  for (;;) {
    while (!nt->head && !nt->stop) pthread_cond_wait(&nt->cv, &nt->mu);
    if (nt->stop) break;
    note *n = nt->head;
    nt->head = n->next;
    if (!nt->head) nt->tail = NULL;
    pthread_mutex_unlock(&nt->mu);
    ssize_t r;
    do r = write(nt->fd, n->data, n->len); while (r < 0 && errno == EINTR);
    int err = r < 0 ? errno : 0;
    free(n);
    pthread_mutex_lock(&nt->mu);
    /* ENOENT: the kernel no longer has that node or name cached, nothing to drop */
    if (err && err != ENOENT) { nt->failed++; nt->last_err = err; } else nt->written++;
  }
  while (nt->head) { note *n = nt->head; nt->head = n->next; free(n); }
  pthread_mutex_unlock(&nt->mu);
  close(nt->fd);
  pthread_mutex_destroy(&nt->mu);
  pthread_cond_destroy(&nt->cv);
  free(nt);
  return NULL;
}

static notifier *notifier_start(int fd) {
  notifier *nt = calloc(1, sizeof *nt);
  if (!nt) return NULL;
  nt->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  pthread_attr_t at;
  pthread_t t;
  pthread_attr_init(&at);
  pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&at, 64 * 1024);
  pthread_mutex_init(&nt->mu, NULL);
  pthread_cond_init(&nt->cv, NULL);
  /* The dup shares the open file's O_NONBLOCK (F_SETFL here would make the JS thread's reads
     block): harmless, writing /dev/fuse never answers EAGAIN; the kernel waits for its locks. */
  if (nt->fd < 0 || pthread_create(&t, &at, notifier_main, nt) != 0) {
    if (nt->fd >= 0) close(nt->fd);
    pthread_mutex_destroy(&nt->mu);
    pthread_cond_destroy(&nt->cv);
    free(nt);
    nt = NULL;
  }
  pthread_attr_destroy(&at);
  return nt;
}

static void notifier_stop(notifier *nt) {
  if (!nt) return;
  pthread_mutex_lock(&nt->mu);
  nt->stop = 1;
  pthread_cond_signal(&nt->cv);
  pthread_mutex_unlock(&nt->mu);
}

struct uring;
typedef struct session {
  napi_env env;
  int fd;
  char *buf;          /* the JS Buffer's memory: requests packed one after the other */
  size_t cap;         /* its size */
  size_t slot;        /* the room one read(2) is given: the kernel's minimum (max_write + headers) */
  uint32_t nslots;    /* requests per batch at most (lens.length) */
  uint32_t *lens;     /* the JS Uint32Array: the length of each request read */
  uint32_t single;    /* wakeups left that read one request and do not ask for a second (read_batch) */
  uv_poll_t poll;
  int polling, ended, dispatching, poll_closed, finalized, released;
  napi_ref buf_ref, lens_ref, on_batch, on_exit, self;
  napi_async_context actx;
  napi_ref resource;
  notifier *nt[LANE_COUNT]; /* per lane (LANE_ENTRY, LANE_PAGES), started at its first notify(); stopped when the session ends */
  struct uring *ur;   /* FUSE over io_uring (uringSetup), or NULL */
} session;

static void ring_stop(struct uring *r);
static int ring_reply(struct uring *r, const char *head, size_t hl, const char *data, size_t dl, ssize_t *out);

static napi_value throw_errno(napi_env env, const char *what, int err) {
  char msg[256];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  napi_throw_error(env, NULL, msg);
  return NULL;
}

static napi_value num(napi_env env, double d) {
  napi_value v;
  napi_create_double(env, d, &v);
  return v;
}

/* open(): /dev/fuse, close-on-exec (a child the daemon spawns must not hold the mount alive) */
static napi_value dev_open(napi_env env, napi_callback_info info) {
  int fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
  if (fd < 0) return throw_errno(env, "open /dev/fuse", errno);
  return num(env, fd);
}

/* closeFd(fd): a device fd whose mount failed (a started session closes its own) */
static napi_value dev_close_fd(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  double fd = -1;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc == 1 && napi_get_value_double(env, argv[0], &fd) == napi_ok && fd >= 0) close((int) fd);
  return NULL;
}

static char *str_arg(napi_env env, napi_value v) {
  size_t len;
  if (napi_get_value_string_latin1(env, v, NULL, 0, &len) != napi_ok) return NULL;
  char *s = malloc(len + 1);
  if (s) napi_get_value_string_latin1(env, v, s, len + 1, &len);
  return s;
}

/*
 * mount(source, target, fstype, flags, data) -> 0 or -errno. data carries
 * fd=N,rootmode=,user_id=,group_id= and the kernel's FUSE words (built in
 * fuse/kernel/mount.ts). The kernel sends INIT in the background: this
 * returns before anyone answers it, so it cannot wait for this thread.
 */
static napi_value dev_mount(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  double flags = 0;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 5) { napi_throw_error(env, NULL, "mount(source, target, fstype, flags, data)"); return NULL; }
  char *src = str_arg(env, argv[0]), *tgt = str_arg(env, argv[1]), *type = str_arg(env, argv[2]), *data = str_arg(env, argv[4]);
  napi_get_value_double(env, argv[3], &flags);
  int r = (src && tgt && type && data) ? mount(src, tgt, type, (unsigned long) flags, data) : (errno = ENOMEM, -1);
  int err = r < 0 ? errno : 0;
  free(src); free(tgt); free(type); free(data);
  return num(env, -err);
}

/*
 * socketpair() -> [ours, theirs]: a unix socket pair for fusermount3, which sends
 * the /dev/fuse fd it opened and mounted over it (SCM_RIGHTS). Ours is close-on-exec;
 * theirs is handed to the child as fd 3 (_FUSE_COMMFD=3) by spawn's stdio.
 */
static napi_value dev_socketpair(napi_env env, napi_callback_info info) {
  int sv[2];
  napi_value arr;
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) return throw_errno(env, "socketpair", errno);
  napi_create_array_with_length(env, 2, &arr);
  napi_set_element(env, arr, 0, num(env, sv[0]));
  napi_set_element(env, arr, 1, num(env, sv[1]));
  return arr;
}

/* recvFd(sock) -> the fd fusermount3 sent, or -errno (-EPROTO: it sent none) */
static napi_value dev_recv_fd(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  double sock = -1;
  char byte;
  char ctl[CMSG_SPACE(sizeof(int))];
  struct iovec iov = { &byte, 1 };
  struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof ctl };
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc == 1) napi_get_value_double(env, argv[0], &sock);
  ssize_t r;
  do r = recvmsg((int) sock, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT); while (r < 0 && errno == EINTR);
  if (r < 0) return num(env, -errno);
  struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
  if (r == 0 || !c || c->cmsg_type != SCM_RIGHTS) return num(env, -EPROTO);
  int fd;
  memcpy(&fd, CMSG_DATA(c), sizeof fd);
  return num(env, fd);
}

static void maybe_free(session *s) {
  if (s->poll_closed && s->finalized) free(s);
}

static void on_poll_closed(uv_handle_t *h) {
  session *s = h->data;
  s->poll_closed = 1;
  maybe_free(s);
}

/* Drop the JS references once no batch is being dispatched (JS may close from inside one). */
static void release_session(session *s) {
  if (s->released) return;
  s->released = 1;
  napi_env env = s->env;
  napi_delete_reference(env, s->buf_ref); napi_delete_reference(env, s->lens_ref);
  napi_delete_reference(env, s->on_batch); napi_delete_reference(env, s->on_exit);
  napi_delete_reference(env, s->resource);
  napi_async_destroy(env, s->actx);
  uv_close((uv_handle_t *) &s->poll, on_poll_closed);
  napi_delete_reference(env, s->self);
}

static void call_js(session *s, napi_ref fn_ref, size_t argc, napi_value *argv) {
  napi_env env = s->env;
  napi_handle_scope scope;
  napi_value fn, recv, res;
  napi_open_handle_scope(env, &scope);
  napi_get_global(env, &recv);
  /* make_callback: promise continuations of the batch run when it returns, as after any libuv callback */
  if (napi_get_reference_value(env, fn_ref, &fn) == napi_ok &&
      napi_make_callback(env, s->actx, recv, fn, argc, argv, &res) != napi_ok) {
    napi_value exc, msg;
    char text[512] = "";
    size_t len;
    napi_get_and_clear_last_exception(env, &exc);
    if (napi_coerce_to_string(env, exc, &msg) == napi_ok) napi_get_value_string_utf8(env, msg, text, sizeof text, &len);
    fprintf(stderr, "stratafs: the FUSE request dispatcher threw: %s\n", text);
  }
  napi_close_handle_scope(env, scope);
}

/* The session is over (ENODEV: unmounted, or JS closed it): stop polling, close the device, tell JS once. */
static void end_session(session *s) {
  if (s->ended) return;
  s->ended = 1;
  if (s->polling) { uv_poll_stop(&s->poll); s->polling = 0; }
  for (int l = 0; l < LANE_COUNT; l++) { notifier_stop(s->nt[l]); s->nt[l] = NULL; }
  if (s->fd >= 0) { close(s->fd); s->fd = -1; }
  ring_stop(s->ur);
  s->ur = NULL;
  call_js(s, s->on_exit, 0, NULL);
}

/*
 * After a wakeup that found one request alone, this many wakeups read one request
 * each and return without the read that would say EAGAIN: a caller that waits for
 * each answer (find, ls -l, cp: 1.05 requests per wakeup) sends one at a time, and
 * that read was one of four syscalls per request (epoll_wait, read, read, writev).
 * A request queued behind the one read wakes the loop again at once (uv_poll is
 * level-triggered); a wakeup that finds two or more drains again.
 */
#define SINGLE_WAKEUPS 16

/*
 * Read requests until EAGAIN, nslots of them, or no room for one more (one request
 * in single mode, above). Each read is
 * given `slot` bytes (the kernel refuses less than max_write + headers) but requests
 * are packed: the next one starts where this one ended, aligned to 8 (JS walks the
 * lengths the same way). So memory is touched only as far as requests fill it: a batch
 * of small requests stays in the first pages, a 1 MiB WRITE touches 1 MiB.
 * Returns how many were read; *gone is set when the kernel says the mount is gone
 * (ENODEV) or reading failed. ENOENT: the request was interrupted before it could be
 * read; just go on.
 */
static uint32_t read_batch(session *s, int *gone) {
  uint32_t n = 0, limit = s->nslots;
  size_t pos = 0;
  int again = 0;
  if (s->single > 0) { s->single--; limit = 1; }
  while (n < limit && s->cap - pos >= s->slot) {
    ssize_t r = read(s->fd, s->buf + pos, s->slot);
    if (r >= 0) { s->lens[n++] = (uint32_t) r; pos += ((size_t) r + 7) & ~(size_t) 7; continue; }
    if (errno == EINTR || errno == ENOENT) continue;
    if (errno == EAGAIN) again = 1;
    else {
      if (errno != ENODEV) fprintf(stderr, "stratafs: reading /dev/fuse: %s\n", strerror(errno));
      *gone = 1;
    }
    break;
  }
  if (limit > 1) s->single = n == 1 && again ? SINGLE_WAKEUPS : 0;
  return n;
}

/* One call into JS: onBatch(n), the n requests packed in the buffer (the device's or the ring's). */
static void hand_batch(session *s, uint32_t n) {
  napi_handle_scope scope;
  napi_open_handle_scope(s->env, &scope);
  napi_value arg = num(s->env, n);
  call_js(s, s->on_batch, 1, &arg);
  napi_close_handle_scope(s->env, scope);
}

/* /dev/fuse readable: one batch, then ONE call into JS with the count (lengths in `lens`). */
static void on_readable(uv_poll_t *h, int status, int events) {
  session *s = h->data;
  int gone = status < 0;
  if (s->ended) return;
  uint32_t n = gone ? 0 : read_batch(s, &gone);
  s->dispatching = 1;
  if (n > 0) hand_batch(s, n);
  if (gone) end_session(s);
  s->dispatching = 0;
  if (s->ended) release_session(s);
}

static void session_finalize(napi_env env, void *data, void *hint) {
  session *s = data;
  s->finalized = 1;
  maybe_free(s);
}

/* The Buffer of slots and the Uint32Array of lengths, checked against each other. */
static int take_buffers(napi_env env, napi_value buf, napi_value lens, session *s) {
  void *data;
  size_t len, n, off;
  napi_typedarray_type t;
  napi_value ab;
  if (napi_get_buffer_info(env, buf, &data, &len) != napi_ok) return -1;
  if (napi_get_typedarray_info(env, lens, &t, &n, (void **) &s->lens, &ab, &off) != napi_ok || t != napi_uint32_array) return -1;
  if (s->slot < 8192 || n == 0 || len < s->slot) return -1;
  s->buf = data;
  s->cap = len;
  s->nslots = (uint32_t) n;
  return 0;
}

/*
 * start(fd, buffer, slotSize, lens, onBatch, onExit) -> session. Each read is
 * given slotSize bytes of the buffer (at least that much, and 8 KiB); the
 * requests of a batch lie packed, each at the previous one's end rounded up to
 * 8, lens.length of them at most. onBatch(n) gets them and must be done with
 * them when it returns (the next batch overwrites them). onExit() runs once,
 * when the session ends.
 */
static napi_value dev_start(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6], result, name;
  double fd = -1, slot = 0;
  uv_loop_t *loop;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 6) { napi_throw_error(env, NULL, "start(fd, buffer, slotSize, lens, onBatch, onExit)"); return NULL; }
  session *s = calloc(1, sizeof *s);
  if (!s) return throw_errno(env, "start", ENOMEM);
  s->env = env;
  napi_get_value_double(env, argv[0], &fd);
  napi_get_value_double(env, argv[2], &slot);
  s->fd = (int) fd;
  s->slot = (size_t) slot;
  if (take_buffers(env, argv[1], argv[3], s) < 0) { free(s); napi_throw_error(env, NULL, "start: a buffer of at least slotSize >= 8 KiB, lens a Uint32Array"); return NULL; }
  fcntl(s->fd, F_SETFL, fcntl(s->fd, F_GETFL) | O_NONBLOCK);
  napi_create_reference(env, argv[1], 1, &s->buf_ref);
  napi_create_reference(env, argv[3], 1, &s->lens_ref);
  napi_create_reference(env, argv[4], 1, &s->on_batch);
  napi_create_reference(env, argv[5], 1, &s->on_exit);
  napi_create_string_utf8(env, "stratafs-fuse-dev", NAPI_AUTO_LENGTH, &name);
  napi_async_init(env, argv[4], name, &s->actx);
  napi_create_reference(env, argv[4], 1, &s->resource);
  napi_get_uv_event_loop(env, &loop);
  uv_poll_init(loop, &s->poll, s->fd);
  s->poll.data = s;
  uv_poll_start(&s->poll, UV_READABLE, on_readable);
  s->polling = 1;
  napi_create_external(env, s, session_finalize, NULL, &result);
  napi_create_reference(env, result, 1, &s->self);
  return result;
}

static session *session_arg(napi_env env, napi_value v) {
  void *p;
  return napi_get_value_external(env, v, &p) == napi_ok ? p : NULL;
}

/*
 * write(session, head, headLen, data, dataLen) -> bytes written or -errno.
 * One reply (or notification) = one writev(2): the header and encoded
 * arguments, then optional payload (read data) without copying it.
 */
static napi_value dev_write(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  struct iovec iov[2];
  double hl = 0, dl = 0;
  size_t hcap = 0, dcap = 0;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  session *s = argc == 5 ? session_arg(env, argv[0]) : NULL;
  if (!s) { napi_throw_error(env, NULL, "write(session, head, headLen, data, dataLen)"); return NULL; }
  if (s->ended) return num(env, -ENOTCONN);
  if (napi_get_buffer_info(env, argv[1], &iov[0].iov_base, &hcap) != napi_ok) { napi_throw_error(env, NULL, "write: head must be a Buffer"); return NULL; }
  napi_get_value_double(env, argv[2], &hl);
  napi_get_value_double(env, argv[4], &dl);
  iov[0].iov_len = hl < 0 || hl > hcap ? hcap : (size_t) hl;
  int cnt = 1;
  if (dl > 0 && napi_get_buffer_info(env, argv[3], &iov[1].iov_base, &dcap) == napi_ok) {
    iov[1].iov_len = dl > dcap ? dcap : (size_t) dl;
    cnt = 2;
  }
  ssize_t r;
  /* an answer to a request a ring entry holds is committed through the ring */
  if (s->ur && ring_reply(s->ur, iov[0].iov_base, iov[0].iov_len, cnt == 2 ? iov[1].iov_base : NULL, cnt == 2 ? iov[1].iov_len : 0, &r)) return num(env, (double) r);
  do r = writev(s->fd, iov, cnt); while (r < 0 && errno == EINTR);
  return num(env, r < 0 ? -errno : (double) r);
}

/*
 * notify(session, msg, len, lane) -> 0 or -errno: queue one notification or answer
 * (header and arguments, copied) for the lane's helper thread, which writes them in
 * order. Returns at once: the JS thread never waits for the kernel's locks.
 */
static napi_value dev_notify(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  void *data;
  size_t cap = 0;
  double len = 0, lane = -1;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  session *s = argc == 4 ? session_arg(env, argv[0]) : NULL;
  if (s) napi_get_value_double(env, argv[3], &lane);
  if (!s || (lane != LANE_ENTRY && lane != LANE_PAGES) || napi_get_buffer_info(env, argv[1], &data, &cap) != napi_ok) {
    napi_throw_error(env, NULL, "notify(session, msg, len, lane 0|1)");
    return NULL;
  }
  if (s->ended) return num(env, -ENOTCONN);
  napi_get_value_double(env, argv[2], &len);
  size_t n = len < 0 || len > cap ? cap : (size_t) len;
  notifier **slot = &s->nt[(int) lane];
  if (!*slot && !(*slot = notifier_start(s->fd))) return num(env, -EAGAIN);
  note *m = malloc(sizeof *m + n);
  if (!m) return num(env, -ENOMEM);
  m->next = NULL;
  m->len = n;
  memcpy(m->data, data, n);
  notifier *nt = *slot;
  pthread_mutex_lock(&nt->mu);
  if (nt->tail) nt->tail->next = m; else nt->head = m;
  nt->tail = m;
  pthread_cond_signal(&nt->cv);
  pthread_mutex_unlock(&nt->mu);
  return num(env, 0);
}

/* notified(session) -> [queued, written, failed, last errno]: what the helper threads did, both lanes summed */
static napi_value dev_notified(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], arr;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  session *s = argc == 1 ? session_arg(env, argv[0]) : NULL;
  if (!s) { napi_throw_error(env, NULL, "notified(session)"); return NULL; }
  double v[4] = { 0, 0, 0, 0 };
  for (int l = 0; l < LANE_COUNT; l++) {
    notifier *nt = s->nt[l];
    if (!nt) continue;
    pthread_mutex_lock(&nt->mu);
    for (note *n = nt->head; n; n = n->next) v[0]++;
    v[1] += nt->written; v[2] += nt->failed;
    if (nt->last_err) v[3] = nt->last_err;
    pthread_mutex_unlock(&nt->mu);
  }
  napi_create_array_with_length(env, 4, &arr);
  for (uint32_t i = 0; i < 4; i++) napi_set_element(env, arr, i, num(env, v[i]));
  return arr;
}

/*
 * close(session, detachPath): end the session now. With a path, detach the
 * mount too (umount2 MNT_DETACH after closing the device, so it never waits
 * for this thread); used when a mount has to be abandoned.
 */
static napi_value dev_close(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_valuetype t = napi_undefined;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  session *s = argc > 0 ? session_arg(env, argv[0]) : NULL;
  if (!s) { napi_throw_error(env, NULL, "close(session, detachPath)"); return NULL; }
  if (s->ended) return NULL;
  char *path = NULL;
  if (argc > 1 && napi_typeof(env, argv[1], &t) == napi_ok && t == napi_string) path = str_arg(env, argv[1]);
  end_session(s);
  if (path) { umount2(path, MNT_DETACH); free(path); }
  if (!s->dispatching) release_session(s);
  return NULL;
}


/*
 * FUSE passthrough (include/uapi/linux/fuse.h 7.40; native-notes/fuse-server.md,
 * "Passthrough"). The kernel's headers on a build machine may predate 7.40, so the
 * two ioctls and their argument are spelled out here as the uapi header has them.
 */
struct sfs_backing_map { int32_t fd; uint32_t flags; uint64_t padding; };
#define SFS_DEV_IOC_BACKING_OPEN _IOW(229, 1, struct sfs_backing_map)
#define SFS_DEV_IOC_BACKING_CLOSE _IOW(229, 2, uint32_t)

static session *session_arg(napi_env env, napi_value v);

/* (session, number) arguments; NULL when malformed */
static session *session_num_args(napi_env env, napi_callback_info info, double *n) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 2 || napi_get_value_double(env, argv[1], n) != napi_ok) return NULL;
  return session_arg(env, argv[0]);
}

/*
 * backingOpen(session, fd) -> backing id (> 0) or -errno. Registers the open file `fd`
 * with the connection: an OPEN reply naming the id makes reads, writes and mmap of
 * that FUSE file go to this file in the kernel. -EPERM: passthrough was not
 * negotiated or the daemon lacks CAP_SYS_ADMIN in the initial user namespace;
 * -ELOOP: the file's file system is stacked as deep as max_stack_depth allows;
 * -ENOTCONN: the session has ended (its device fd is closed).
 */
static napi_value dev_backing_open(napi_env env, napi_callback_info info) {
  double fd;
  session *s = session_num_args(env, info, &fd);
  if (!s) { napi_throw_error(env, NULL, "backingOpen(session, fd)"); return NULL; }
  if (s->ended) return num(env, -ENOTCONN);
  struct sfs_backing_map map = { .fd = (int32_t) fd, .flags = 0, .padding = 0 };
  int r = ioctl(s->fd, SFS_DEV_IOC_BACKING_OPEN, &map);
  return num(env, r < 0 ? -errno : r);
}

/* backingClose(session, id) -> 0 or -errno: the id is forgotten; files opened through it keep their own reference */
static napi_value dev_backing_close(napi_env env, napi_callback_info info) {
  double id;
  session *s = session_num_args(env, info, &id);
  if (!s) { napi_throw_error(env, NULL, "backingClose(session, id)"); return NULL; }
  if (s->ended) return num(env, -ENOTCONN);
  uint32_t v = (uint32_t) id;
  int r = ioctl(s->fd, SFS_DEV_IOC_BACKING_CLOSE, &v);
  return num(env, r < 0 ? -errno : 0);
}


/*
 * FUSE over io_uring (native-notes/fuse-server.md, "io_uring"; the kernel's side is
 * fs/fuse/dev_uring.c, the structs include/uapi/linux/fuse.h 7.42). After INIT was answered
 * with FUSE_OVER_IO_URING, the kernel holds every request back (fuse_block_alloc) until each
 * of its queues -- one per possible CPU (fuse_uring_create: num_possible_cpus()) -- has an
 * entry registered (is_ring_ready); then requests go to the queue of the caller's CPU and
 * come back as completions of IORING_OP_URING_CMD commands on the /dev/fuse fd: REGISTER
 * hands the kernel an entry (a header buffer and a payload buffer of at least max_write),
 * COMMIT_AND_FETCH answers the entry's request from the same buffers and hands the entry
 * back. FORGET and INTERRUPT still come through read(2), notifications still go through
 * write(2) (fuse_io_uring_ops; a commit with unique 0 is refused).
 *
 * One ring, set up here with the raw syscalls (no liburing on a fresh machine), serves every
 * queue from the JS thread: the kernel fills an entry in the task that submitted its command
 * (io_uring_cmd_complete_in_task), which is this thread, woken from epoll_wait by the task
 * work. Completions are announced through an eventfd registered with the ring
 * (IORING_REGISTER_EVENTFD) and polled by uv_poll; each request is packed into the session's
 * batch buffer exactly as read(2) would have delivered it (fuse_in_header, the per-opcode
 * struct, the rest), so server.ts decodes both paths alike.
 */
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <linux/io_uring.h>

#define SFS_URING_CMD_REGISTER 1
#define SFS_URING_CMD_COMMIT_AND_FETCH 2
#define SFS_IN_HEADER 40
#define SFS_OUT_HEADER 16

struct sfs_uring_ent_in_out { uint64_t flags, commit_id; uint32_t payload_sz, padding; uint64_t reserved; };
/* in_out: fuse_in_header on fetch, fuse_out_header on commit; op_in: the request's first argument */
struct sfs_uring_req_header { char in_out[128]; char op_in[128]; struct sfs_uring_ent_in_out ring; };
/* the 80-byte command area of an SQE128 */
struct sfs_uring_cmd_req { uint64_t flags, commit_id; uint16_t qid; uint8_t padding[6]; };

enum { ENT_KERNEL, ENT_JS, ENT_DEAD };
typedef struct ring_ent {
  struct sfs_uring_req_header *hdr;
  char *payload;
  struct iovec iov[2];
  uint64_t unique;   /* the request JS holds (state ENT_JS) */
  uint16_t qid;
  int state;
} ring_ent;

struct uring {
  session *s;
  int fd, efd;
  unsigned *sq_head, *sq_tail, *sq_mask, *sq_array, *cq_head, *cq_tail, *cq_mask;
  struct io_uring_cqe *cqes;
  char *sqes;
  unsigned sq_entries, pending;  /* SQEs written, not yet submitted */
  ring_ent *ents;
  unsigned nents, queues;
  size_t payload;
  uv_poll_t poll;
  int polling;
  double requests, commits, batches;
  int failed;       /* the first error a command completed with (-errno), 0 none */
  int dead;         /* entries the kernel gave back (teardown) */
};
typedef struct uring uring;

static int sys_uring_setup(unsigned entries, struct io_uring_params *p) { return (int) syscall(__NR_io_uring_setup, entries, p); }
static int sys_uring_enter(int fd, unsigned submit, unsigned complete, unsigned flags) { return (int) syscall(__NR_io_uring_enter, fd, submit, complete, flags, NULL, 0); }
static int sys_uring_register(int fd, unsigned op, void *arg, unsigned n) { return (int) syscall(__NR_io_uring_register, fd, op, arg, n); }

/* the number of queues the kernel expects: num_possible_cpus() (the highest possible CPU + 1) */
static unsigned possible_cpus(void) {
  char b[256];
  int fd = open("/sys/devices/system/cpu/possible", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  ssize_t n = read(fd, b, sizeof b - 1);
  close(fd);
  if (n <= 0) return 0;
  b[n] = 0;
  /* "0-1", "0", "0-3,5-7": the last number is the highest */
  char *p = b + n;
  while (p > b && (p[-1] < '0' || p[-1] > '9')) p--;
  while (p > b && p[-1] >= '0' && p[-1] <= '9') p--;
  return (unsigned) strtoul(p, NULL, 10) + 1;
}

/* one URING_CMD SQE for entry i; submitted by ring_submit */
static void ring_queue_cmd(uring *r, unsigned i, uint32_t op, uint64_t commit_id) {
  ring_ent *e = &r->ents[i];
  unsigned tail = *r->sq_tail, idx = tail & *r->sq_mask;
  struct io_uring_sqe *sqe = (struct io_uring_sqe *) (r->sqes + (size_t) idx * 128);
  memset(sqe, 0, 128);
  sqe->opcode = IORING_OP_URING_CMD;
  sqe->fd = r->s->fd;
  sqe->cmd_op = op;
  sqe->user_data = i;
  if (op == SFS_URING_CMD_REGISTER) { sqe->addr = (uint64_t) (uintptr_t) e->iov; sqe->len = 2; }
  struct sfs_uring_cmd_req *cmd = (struct sfs_uring_cmd_req *) sqe->cmd;
  cmd->commit_id = commit_id;
  cmd->qid = e->qid;
  r->sq_array[idx] = idx;
  __atomic_store_n(r->sq_tail, tail + 1, __ATOMIC_RELEASE);
  r->pending++;
  e->state = ENT_KERNEL;
}

static int ring_submit(uring *r) {
  while (r->pending > 0) {
    int n = sys_uring_enter(r->fd, r->pending, 0, 0);
    if (n < 0) { if (errno == EINTR) continue; return -errno; }
    r->pending -= (unsigned) n;
    if (n == 0) return -EBUSY;
  }
  return 0;
}

/*
 * Completions: a request in an entry (res 0) is packed into the batch buffer; the batch goes
 * to JS when full and at the end. An error ends the entry: the kernel's teardown (ENOTCONN,
 * ECANCELED) or a refused command (the first one is kept for stats: a failed REGISTER makes
 * the kernel fall back to /dev/fuse, fuse_uring_cmd).
 */
static void on_ring(uv_poll_t *h, int status, int events) {
  uring *r = h->data;
  session *s = r->s;
  uint64_t v;
  if (s->ended) return;
  while (read(r->efd, &v, sizeof v) < 0 && errno == EINTR) {}
  uint32_t n = 0;
  size_t pos = 0;
  s->dispatching = 1;
  for (;;) {
    unsigned head = *r->cq_head, tail = __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE);
    if (head == tail || s->ended) break;
    struct io_uring_cqe *c = &r->cqes[head & *r->cq_mask];
    uint64_t i = c->user_data;
    int res = c->res;
    __atomic_store_n(r->cq_head, head + 1, __ATOMIC_RELEASE);
    if (i >= r->nents) continue;
    ring_ent *e = &r->ents[i];
    if (res < 0) {
      e->state = ENT_DEAD;
      r->dead++;
      if (!r->failed && res != -ENOTCONN && res != -ECANCELED) {
        r->failed = res;
        fprintf(stderr, "stratafs: FUSE io_uring command failed: %s\n", strerror(-res));
      }
      continue;
    }
    uint32_t len, psz = e->hdr->ring.payload_sz;
    memcpy(&len, e->hdr->in_out, 4);
    memcpy(&e->unique, e->hdr->in_out + 8, 8);
    /* in_header.len counts the first argument (in op_in) and the payload */
    if (len < SFS_IN_HEADER + psz || len - SFS_IN_HEADER - psz > sizeof e->hdr->op_in || psz > r->payload) {
      fprintf(stderr, "stratafs: FUSE io_uring request of %u bytes with payload %u: dropped\n", len, psz);
      e->state = ENT_DEAD;
      r->dead++;
      continue;
    }
    uint32_t arg0 = len - SFS_IN_HEADER - psz;
    char *d = s->buf + pos;
    memcpy(d, e->hdr->in_out, SFS_IN_HEADER);
    memcpy(d + SFS_IN_HEADER, e->hdr->op_in, arg0);
    memcpy(d + SFS_IN_HEADER + arg0, e->payload, psz);
    e->state = ENT_JS;
    r->requests++;
    s->lens[n++] = len;
    pos += ((size_t) len + 7) & ~(size_t) 7;
    if (n == s->nslots || s->cap - pos < s->slot) {
      r->batches++;
      hand_batch(s, n);
      n = 0;
      pos = 0;
    }
  }
  if (n > 0 && !s->ended) {
    r->batches++;
    hand_batch(s, n);
  }
  if (!s->ended) ring_submit(r);
  s->dispatching = 0;
  if (s->ended) release_session(s);
}

/*
 * The answer to a request held by a ring entry: the out header into the entry's header, the
 * rest into its payload, then COMMIT_AND_FETCH (submitted at once: the caller waits). 1 when
 * the unique was a ring entry's, 0 when the reply goes to /dev/fuse (a request read(2) gave).
 */
static int ring_reply(uring *r, const char *head, size_t hl, const char *data, size_t dl, ssize_t *out) {
  uint64_t unique;
  if (hl < SFS_OUT_HEADER) return 0;
  memcpy(&unique, head + 8, 8);
  if (unique == 0) return 0;
  for (unsigned i = 0; i < r->nents; i++) {
    ring_ent *e = &r->ents[i];
    if (e->state != ENT_JS || e->unique != unique) continue;
    size_t body = hl - SFS_OUT_HEADER + dl;
    if (body > r->payload) { *out = -EOVERFLOW; return 1; }
    memcpy(e->hdr->in_out, head, SFS_OUT_HEADER);
    memcpy(e->payload, head + SFS_OUT_HEADER, hl - SFS_OUT_HEADER);
    if (dl > 0) memcpy(e->payload + hl - SFS_OUT_HEADER, data, dl);
    e->hdr->ring.payload_sz = (uint32_t) body;
    ring_queue_cmd(r, i, SFS_URING_CMD_COMMIT_AND_FETCH, unique);
    r->commits++;
    int err = ring_submit(r);
    *out = err < 0 ? err : (ssize_t) (hl + dl);
    return 1;
  }
  return 0;
}

static void on_ring_closed(uv_handle_t *h) { free(h->data); }

/*
 * Ends the ring with the session (the device is closed first: the kernel tears its entries
 * down). The entries' buffers stay mapped: task work the kernel queued before the close may
 * still copy a request into them on this thread's next return to user space, and the
 * daemon exits with its mount anyway.
 */
static void ring_stop(uring *r) {
  if (!r) return;
  if (r->polling) { uv_poll_stop(&r->poll); r->polling = 0; }
  close(r->fd);
  close(r->efd);
  uv_close((uv_handle_t *) &r->poll, on_ring_closed);
}

/*
 * uringSetup(session, payloadSize, depth) -> queues (> 0) or -errno: the ring, its eventfd and
 * `depth` entries per queue, before INIT is answered: once the kernel has FUSE_OVER_IO_URING
 * in the answer it holds every request back until all queues have an entry, so a ring that
 * cannot be made (io_uring disabled by sysctl, no memory) must be known before. payloadSize
 * must be at least the kernel's max_payload_sz: max(8 KiB, max_write, max_pages pages).
 */
static napi_value dev_uring_setup(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  double payload = 0, depth = 0;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  session *s = argc == 3 ? session_arg(env, argv[0]) : NULL;
  if (!s) { napi_throw_error(env, NULL, "uringStart(session, payloadSize, depth)"); return NULL; }
  napi_get_value_double(env, argv[1], &payload);
  napi_get_value_double(env, argv[2], &depth);
  if (s->ended) return num(env, -ENOTCONN);
  if (s->ur) return num(env, -EALREADY);
  unsigned queues = possible_cpus();
  if (queues == 0 || depth < 1 || depth > 64 || payload < 8192) return num(env, -EINVAL);
  uring *r = calloc(1, sizeof *r);
  if (!r) return num(env, -ENOMEM);
  r->s = s;
  r->queues = queues;
  r->nents = queues * (unsigned) depth;
  r->payload = ((size_t) payload + 4095) & ~(size_t) 4095;
  r->efd = -1;
  struct io_uring_params p;
  memset(&p, 0, sizeof p);
  p.flags = IORING_SETUP_SQE128;
  unsigned want = 1;
  while (want < r->nents) want <<= 1;
  int err = 0;
  r->fd = sys_uring_setup(want, &p);
  if (r->fd < 0) { err = -errno; free(r); return num(env, err); }
  size_t sq_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
  size_t cq_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
  if (p.features & IORING_FEAT_SINGLE_MMAP) sq_len = cq_len = sq_len > cq_len ? sq_len : cq_len;
  char *sq = mmap(NULL, sq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_SQ_RING);
  char *cq = sq;
  if (sq != MAP_FAILED && !(p.features & IORING_FEAT_SINGLE_MMAP))
    cq = mmap(NULL, cq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_CQ_RING);
  r->sqes = mmap(NULL, (size_t) p.sq_entries * 128, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_SQES);
  r->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (sq == MAP_FAILED || cq == MAP_FAILED || r->sqes == MAP_FAILED || r->efd < 0) err = -errno;
  else if (sys_uring_register(r->fd, IORING_REGISTER_EVENTFD, &r->efd, 1) < 0) err = -errno;
  r->ents = err ? NULL : calloc(r->nents, sizeof *r->ents);
  if (!err && !r->ents) err = -ENOMEM;
  if (err) {
    /* the mappings go with the ring fd's last reference only once unmapped; a failed setup is rare */
    if (r->efd >= 0) close(r->efd);
    close(r->fd);
    free(r->ents);
    free(r);
    return num(env, err);
  }
  r->sq_head = (unsigned *) (sq + p.sq_off.head); r->sq_tail = (unsigned *) (sq + p.sq_off.tail);
  r->sq_mask = (unsigned *) (sq + p.sq_off.ring_mask); r->sq_array = (unsigned *) (sq + p.sq_off.array);
  r->cq_head = (unsigned *) (cq + p.cq_off.head); r->cq_tail = (unsigned *) (cq + p.cq_off.tail);
  r->cq_mask = (unsigned *) (cq + p.cq_off.ring_mask); r->cqes = (struct io_uring_cqe *) (cq + p.cq_off.cqes);
  r->sq_entries = p.sq_entries;
  /* headers together; each payload its own mapping, touched only as far as requests fill it */
  char *hdrs = mmap(NULL, (size_t) r->nents * sizeof(struct sfs_uring_req_header), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (hdrs == MAP_FAILED) { err = -errno; close(r->efd); close(r->fd); free(r->ents); free(r); return num(env, err); }
  for (unsigned i = 0; i < r->nents; i++) {
    ring_ent *e = &r->ents[i];
    e->hdr = (struct sfs_uring_req_header *) (hdrs + (size_t) i * sizeof *e->hdr);
    e->payload = mmap(NULL, r->payload, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (e->payload == MAP_FAILED) { err = -errno; break; }
    e->iov[0].iov_base = e->hdr; e->iov[0].iov_len = sizeof *e->hdr;
    e->iov[1].iov_base = e->payload; e->iov[1].iov_len = r->payload;
    e->qid = (uint16_t) (i % queues);
  }
  if (err) { close(r->efd); close(r->fd); free(r->ents); free(r); return num(env, err); }
  uv_loop_t *loop;
  napi_get_uv_event_loop(env, &loop);
  uv_poll_init(loop, &r->poll, r->efd);
  r->poll.data = r;
  uv_poll_start(&r->poll, UV_READABLE, on_ring);
  r->polling = 1;
  s->ur = r;
  return num(env, queues);
}

/*
 * uringRegister(session) -> 0 or -errno: REGISTER every entry, once INIT was answered with
 * FUSE_OVER_IO_URING (fuse_uring_cmd answers EAGAIN before: the ring needs max_write). A
 * REGISTER the kernel refuses completes with the error and makes it fall back to /dev/fuse.
 */
static napi_value dev_uring_register(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  session *s = argc == 1 ? session_arg(env, argv[0]) : NULL;
  if (!s) { napi_throw_error(env, NULL, "uringRegister(session)"); return NULL; }
  uring *r = s->ur;
  if (s->ended) return num(env, -ENOTCONN);
  if (!r) return num(env, -EINVAL);
  int err = 0;
  /* submitted in rounds no larger than the SQ ring */
  for (unsigned i = 0; i < r->nents && !err; i++) {
    ring_queue_cmd(r, i, SFS_URING_CMD_REGISTER, 0);
    if (r->pending == r->sq_entries || i + 1 == r->nents) err = ring_submit(r);
  }
  return num(env, err);
}

/* uringStats(session) -> [queues, entries, requests, commits, batches, failed -errno, dead] (all 0 without a ring) */
static napi_value dev_uring_stats(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], arr;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  session *s = argc == 1 ? session_arg(env, argv[0]) : NULL;
  if (!s) { napi_throw_error(env, NULL, "uringStats(session)"); return NULL; }
  uring *r = s->ur;
  double v[7] = { 0 };
  if (r) { v[0] = r->queues; v[1] = r->nents; v[2] = r->requests; v[3] = r->commits; v[4] = r->batches; v[5] = r->failed; v[6] = r->dead; }
  napi_create_array_with_length(env, 7, &arr);
  for (uint32_t i = 0; i < 7; i++) napi_set_element(env, arr, i, num(env, v[i]));
  return arr;
}

static napi_value init(napi_env env, napi_value exports) {
  static const struct { const char *name; napi_callback fn; } fns[] = {
    { "open", dev_open }, { "mount", dev_mount }, { "start", dev_start }, { "write", dev_write }, { "close", dev_close }, { "closeFd", dev_close_fd },
    { "socketpair", dev_socketpair }, { "recvFd", dev_recv_fd },
    { "backingOpen", dev_backing_open }, { "backingClose", dev_backing_close },
    { "socketpair", dev_socketpair }, { "recvFd", dev_recv_fd }, { "notify", dev_notify }, { "notified", dev_notified },
    { "uringSetup", dev_uring_setup }, { "uringRegister", dev_uring_register }, { "uringStats", dev_uring_stats },
  };
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    napi_value f;
    if (napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].fn, NULL, &f) != napi_ok ||
        napi_set_named_property(env, exports, fns[i].name, f) != napi_ok) return NULL;
  }
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
