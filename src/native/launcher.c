/*
 * stratafs launcher: the short-lived parent of a daemonizing mount.
 * Why it exists and what it does: native-notes/launcher.md.
 *
 * `stratafs -o OPTS MNT` (and the mount-helper form `stratafs SRC MNT -o OPTS`)
 * must exit only once the mount answers; podman waits for exactly that. Node
 * cannot fork, so a Node parent costs a whole second Node start (plus its
 * imports) on every mount. This program starts the one Node process that serves
 * the mount and relays its verdict:
 *
 *   fork; child: setsid, stdin /dev/null, stdout+stderr = the "early" pipe,
 *                fd 3 = the verdict pipe, exec node CLI --daemon-child ARGS
 *                (CLI: dist/cjs/stratafs.cjs, else dist/cli/main.js)
 *   parent: copy the early pipe to our stderr (warnings, a crash before the
 *           daemon has its log), read lines from fd 3:
 *             log KIND PATH   the daemon's log (KIND managed|plain, see cli/daemon.ts)
 *             ready           the kernel's INIT was answered: exit 0
 *             error MESSAGE   "stratafs: MESSAGE", wait for the daemon to go, exit 1
 *           A daemon that dies (or hangs for 120 s) without a verdict: the launcher
 *           execs `node CLI --daemon-gone ...`, which settles the log and says
 *           so in the same words as the Node CLI (a rare path: speed is no concern).
 *
 * Anything that is not a plain mount command line (umount, stats, image
 * commands, -f, --help, --version, unusual option spellings) is handed to
 * `node CLI` with exec, unchanged: the Node CLI stays the one parser, and
 * its own parent path (cli/daemon.ts spawnDaemon) speaks the same protocol.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* The CLI relative to this binary (src/native/build/Release/): its CommonJS build, loaded
 * much faster by Node 20 (rolldown.config.mjs), else tsc's ES modules. */
#define CLI_CJS_REL "/../../../../dist/cjs/stratafs.cjs"
#define CLI_ESM_REL "/../../../../dist/cli/main.js"
#define READY_TIMEOUT_MS 120000
#define KILL_AFTER_ERROR_MS 10000
#define READY_FD 3

static const char *const SUBCOMMANDS[] = {
  "umount", "stats", "inspect", "mount", "help", "layer", "image", "diff", "commit", "size", "which", NULL,
};

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...) {
  char buf[8192];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if ((size_t)n > sizeof buf - 2) n = sizeof buf - 2;
  buf[n++] = '\n';
  for (char *p = buf; n > 0;) {
    ssize_t w = write(2, p, (size_t)n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;
    p += w, n -= (int)w;
  }
}

static void write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;
    p += w, n -= (size_t)w;
  }
}

static long long now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/*
 * A plain mount command line: only `-o VALUE`, `-oVALUE`, `-d`, `--debug` and one or
 * two positionals (MNT, or SRC MNT) whose first is no subcommand, with at least one -o.
 * Everything else goes to the Node CLI as it is.
 */
static bool plain_mount(int argc, char **argv) {
  int positionals = 0, options = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "-o") == 0) {
      if (i + 1 >= argc) return false;
      i++, options++;
    } else if (strncmp(a, "-o", 2) == 0) {
      options++;
    } else if (strcmp(a, "-d") == 0 || strcmp(a, "--debug") == 0) {
      /* the daemon logs every operation */
    } else if (a[0] == '-' || a[0] == '\0') {
      return false;
    } else {
      if (positionals == 0) {
        for (const char *const *s = SUBCOMMANDS; *s; s++) {
          if (strcmp(a, *s) == 0) return false;
        }
      }
      if (++positionals > 2) return false;
    }
  }
  return options > 0 && positionals > 0;
}

static void exec_node(char **args) {
  // STRATAFS_LAUNCHER_DRY_RUN=1: print what would run instead (tests keep this and args.ts in step)
  const char *dry = getenv("STRATAFS_LAUNCHER_DRY_RUN");
  if (dry && strcmp(dry, "1") == 0) {
    for (char **a = args; *a; a++) printf("%s\n", *a);
    fflush(stdout);
    _exit(0);
  }
  execvp("node", args);
}

/* "SIGKILL" for 9, as Node names a signal in the same message */
static const char *signame(int sig) {
  static char buf[32];
  const char *abbrev = sigabbrev_np(sig);
  if (abbrev == NULL) snprintf(buf, sizeof buf, "signal %d", sig);
  else snprintf(buf, sizeof buf, "SIG%s", abbrev);
  return buf;
}

typedef struct {
  int fd;
  bool open;
} Stream;

/* Copy what the early pipe has to our stderr; at EOF, mark it closed. */
static void relay(Stream *early) {
  char buf[4096];
  for (;;) {
    ssize_t n = read(early->fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    if (n <= 0) {
      close(early->fd);
      early->open = false;
      return;
    }
    write_all(2, buf, (size_t)n);
  }
}

/* Wait up to ms for the child to exit while relaying its early output; true once reaped. */
static bool wait_child(pid_t pid, int *status, Stream *early, long long ms) {
  long long until = now_ms() + ms;
  for (;;) {
    pid_t r = waitpid(pid, status, WNOHANG);
    if (r == pid || (r < 0 && errno == ECHILD)) return true;
    long long left = until - now_ms();
    if (left <= 0) return false;
    if (early->open) {
      struct pollfd p = { early->fd, POLLIN, 0 };
      if (poll(&p, 1, left < 10 ? (int)left : 10) > 0) relay(early);
    } else {
      struct timespec t = { 0, 5 * 1000 * 1000 };
      nanosleep(&t, NULL);
    }
  }
}

int main(int argc, char **argv) {
  // fds 0-2 closed by our caller would be taken by the pipes below: hold them with /dev/null
  for (int fd = 0; fd >= 0 && fd < 3;) {
    fd = open("/dev/null", O_RDWR);
    if (fd > 2) close(fd);
  }
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) {
    say("stratafs: cannot find the launcher's own path (/proc/self/exe): %s", strerror(errno));
    return 1;
  }
  self[n] = '\0';
  char *slash = strrchr(self, '/');
  if (slash) *slash = '\0';
  char rel[PATH_MAX + sizeof CLI_CJS_REL], main_js[PATH_MAX + sizeof CLI_CJS_REL];
  snprintf(rel, sizeof rel, "%s%s", self, CLI_CJS_REL);
  // a clean path in the daemon's command line (ps); an unbuilt dist/ is Node's to report
  if (!realpath(rel, main_js)) {
    snprintf(rel, sizeof rel, "%s%s", self, CLI_ESM_REL);
    if (!realpath(rel, main_js)) snprintf(main_js, sizeof main_js, "%s", rel);
  }

  // stratafs makes no TLS connection: Node would parse this CA bundle at every start for
  // nothing (measured here: 34 ms CPU, 50 ms wall of an 85 ms `node -e 0`).
  unsetenv("NODE_EXTRA_CA_CERTS");

  char **args = calloc((size_t)argc + 5, sizeof *args);
  if (!args) return 1;
  int k = 0;
  args[k++] = "node";
  if (!plain_mount(argc, argv)) {
    args[k++] = main_js;
    for (int i = 1; i < argc; i++) args[k++] = argv[i];
    exec_node(args);
    say("stratafs: cannot run node: %s", strerror(errno));
    return 1;
  }
  // A daemon allocates little that lives long per request: V8's default semi-spaces only inflate its
  // RSS (1 MiB: see spawnDaemon in src/cli/daemon.ts, which passes the same).
  args[k++] = "--max-semi-space-size=1";
  // glibc gives each thread that mallocs (V8's, libuv's pool, fuse-dev's helper) an arena of its
  // own, ~0.4 MiB resident each; two share them (peak RSS -1.8 MiB, same in spawnDaemon).
  setenv("MALLOC_ARENA_MAX", "2", 0);
  args[k++] = main_js;
  args[k++] = "--daemon-child";
  for (int i = 1; i < argc; i++) args[k++] = argv[i];
  const char *dry = getenv("STRATAFS_LAUNCHER_DRY_RUN");
  if (dry && strcmp(dry, "1") == 0) exec_node(args);

  int verdict[2], early[2];
  if (pipe2(verdict, O_CLOEXEC) < 0 || pipe2(early, O_CLOEXEC) < 0) {
    say("stratafs: cannot start the daemon: pipe: %s", strerror(errno));
    return 1;
  }
  pid_t pid = fork();
  if (pid < 0) {
    say("stratafs: cannot start the daemon: fork: %s", strerror(errno));
    return 1;
  }
  if (pid == 0) {
    setsid();
    // out of the way of 0-3 first (F_DUPFD copies are not close-on-exec)
    int v = fcntl(verdict[1], F_DUPFD, 10), e = fcntl(early[1], F_DUPFD, 10);
    int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null >= 0) dup2(null, 0);
    dup2(e, 1);
    dup2(e, 2);
    dup2(v, READY_FD);
    // nothing else of our caller's: an inherited pipe held by a long-lived daemon would keep its reader waiting for EOF
    if (syscall(SYS_close_range, READY_FD + 1, ~0U, 0) < 0) {
      for (int fd = READY_FD + 1; fd < 1024; fd++) close(fd);
    }
    exec_node(args);
    char line[512];
    int m = snprintf(line, sizeof line, "error cannot start the daemon: node: %s\n", strerror(errno));
    if (m > 0) write_all(READY_FD, line, (size_t)m);
    _exit(127);
  }
  close(verdict[1]);
  close(early[1]);
  // a reader of our stderr that went away must not kill us before the daemon is dealt with
  signal(SIGPIPE, SIG_IGN);
  fcntl(early[0], F_SETFL, O_NONBLOCK);
  Stream out = { early[0], true };

  char line[8192];
  size_t used = 0;
  char log_line[sizeof line] = "";
  int code = -1;
  const char *message = NULL;
  char said[8192 + 32];
  long long deadline = now_ms() + READY_TIMEOUT_MS;
  bool verdict_open = true;

  while (code < 0 && verdict_open) {
    long long left = deadline - now_ms();
    if (left <= 0) break;
    struct pollfd p[2] = { { verdict[0], POLLIN, 0 }, { out.open ? out.fd : -1, POLLIN, 0 } };
    int r = poll(p, 2, left > INT_MAX ? INT_MAX : (int)left);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) break;
    if (p[1].revents) relay(&out);
    if (!p[0].revents) continue;
    ssize_t got = read(verdict[0], line + used, sizeof line - 1 - used);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      verdict_open = false;
      break;
    }
    used += (size_t)got;
    char *nl;
    while (code < 0 && (nl = memchr(line, '\n', used)) != NULL) {
      *nl = '\0';
      if (strncmp(line, "log ", 4) == 0) {
        snprintf(log_line, sizeof log_line, "%s", line + 4);
      } else if (strcmp(line, "ready") == 0) {
        code = 0;
      } else if (strncmp(line, "error ", 6) == 0) {
        snprintf(said, sizeof said, "%s", line + 6);
        message = said, code = 1;
      } else {
        snprintf(said, sizeof said, "daemon said: %s", line);
        message = said, code = 1;
      }
      size_t rest = used - (size_t)(nl + 1 - line);
      memmove(line, nl + 1, rest);
      used = rest;
    }
    if (used == sizeof line - 1) used = 0; /* an endless line: drop it */
  }

  int status = 0;
  if (code == 0) {
    // The daemon pointed its stdout/stderr at its log before saying ready: the early pipe is at EOF.
    long long until = now_ms() + 1000;
    while (out.open && now_ms() < until) {
      struct pollfd p = { out.fd, POLLIN, 0 };
      if (poll(&p, 1, 50) > 0) relay(&out);
    }
    return 0;
  }
  char how[64] = "";
  if (code < 0 && verdict_open) {
    // No verdict in time: the mount is not coming.
    kill(pid, SIGKILL);
    wait_child(pid, &status, &out, KILL_AFTER_ERROR_MS);
  } else {
    // An error verdict, or the verdict pipe closed without one: the daemon is on its way out.
    // Return only once it is gone, so that a non-zero exit leaves no process behind.
    if (!wait_child(pid, &status, &out, KILL_AFTER_ERROR_MS)) {
      kill(pid, SIGKILL);
      wait_child(pid, &status, &out, KILL_AFTER_ERROR_MS);
    }
    if (code < 0) {
      if (WIFSIGNALED(status)) snprintf(how, sizeof how, "%s", signame(WTERMSIG(status)));
      else snprintf(how, sizeof how, "code %d", WEXITSTATUS(status));
    }
  }
  while (out.open) {
    struct pollfd p = { out.fd, POLLIN, 0 };
    if (poll(&p, 1, 100) <= 0) break;
    relay(&out);
  }
  if (code == 1) {
    say("stratafs: %s", message);
    return 1;
  }
  // No verdict: the Node CLI settles the log and tells (cli/daemon-child.ts daemonGone).
  char *gone[8];
  int g = 0;
  gone[g++] = "node";
  gone[g++] = main_js;
  gone[g++] = "--daemon-gone";
  gone[g++] = how[0] ? "exited" : "timeout";
  if (how[0]) gone[g++] = how;
  char *kind = log_line, *path = NULL;
  if (log_line[0] && (path = strchr(log_line, ' ')) != NULL) {
    *path++ = '\0';
    gone[g++] = kind;
    gone[g++] = path;
  }
  gone[g] = NULL;
  exec_node(gone);
  say("stratafs: %s before the mount was ready (and node could not be run to say more: %s)",
      how[0] ? "the daemon exited" : "no answer from the daemon", strerror(errno));
  return 1;
}
