/*
 * The benchmark's load generator in C (epoll, non-blocking sockets, one
 * thread), so that the generator costs the shared cores far less than the
 * servers it measures. bench/run.ts compiles it into a temporary directory:
 *   cc -O2 -o loadgen bench/loadgen.c
 * It connects only to 127.0.0.1:<port> (and <port2> in fan-out). Modes (see usage()): `echo` (a closed
 * loop of pre-masked messages), `handshake` (a reconnect storm over idle
 * connections), `fanout` (one publisher, many subscribers), `storm` (the
 * subscribers drop and reconnect) and `recover` (live-protocol clients drop,
 * miss publications, reconnect and recover them). It prints one
 * JSON object on stdout; lines on stderr starting with "#start" and "#end"
 * mark the measured window, anything else there is a note or an error.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ---- options ------------------------------------------------------------ */

enum mode { MODE_ECHO, MODE_HANDSHAKE, MODE_FANOUT, MODE_STORM, MODE_RECOVER };

static struct {
  enum mode mode;
  int port;
  int port2;            /* fanout: every other subscriber connects here */
  const char *path;
  uint32_t connections; /* echo */
  uint32_t inflight;    /* echo: messages in flight per connection */
  uint32_t size;        /* echo and fanout: payload bytes */
  int binary;           /* echo: binary frames instead of text */
  uint32_t warmup_ms;
  uint32_t duration_ms;
  uint32_t open;        /* handshake: idle connections opened first */
  uint32_t handshakes;  /* handshake: handshakes measured after them */
  uint32_t concurrency; /* handshakes in progress at most (all modes) */
  uint32_t subscribers; /* fanout */
  uint32_t window;      /* fanout: published messages not yet delivered */
  uint32_t missed;      /* recover: publications made while away */
  uint32_t settle_ms;   /* recover: after the drop, before publishing */
  uint32_t timeout_ms;  /* the whole run, so that a stuck server cannot hang it */
  uint32_t drain_ms;    /* after the run: for echoes and deliveries to arrive */
} opt = {
    .mode = MODE_ECHO,
    .port = 0,
    .port2 = 0,
    .path = "/",
    .connections = 64,
    .inflight = 16,
    .size = 16,
    .binary = 0,
    .warmup_ms = 1000,
    .duration_ms = 3000,
    .open = 1000,
    .handshakes = 5000,
    .concurrency = 128,
    .subscribers = 100,
    .window = 16,
    .missed = 100,
    .settle_ms = 500,
    .timeout_ms = 120000,
    .drain_ms = 5000,
};

static void usage(void) {
  fprintf(stderr,
          "usage: loadgen --port P [--mode echo|handshake|fanout] [options]\n"
          "  all:       --concurrency K (handshakes in progress, 128)\n"
          "             --timeout MS (whole run, 120000)\n"
          "             --drain MS (for the last echoes or deliveries, 5000)\n"
          "  echo:      --connections C (64) --inflight M (16) --size S (16)\n"
          "             --binary --warmup MS (1000) --duration MS (3000)\n"
          "             --path /\n"
          "  handshake: --open O (1000) --handshakes H (5000)\n"
          "  fanout:    --subscribers N (100) --window W (16) --size S (64)\n"
          "             --warmup MS --duration MS (publisher /pub, N x /sub)\n"
          "             --port2 P2 (every other subscriber on P2: a second\n"
          "             server sharing the topic; the publisher stays on P)\n"
          "  storm:     --subscribers N (1000) --concurrency K: N subscribers\n"
          "             drop at once and reconnect, K connecting at most\n"
          "  recover:   --subscribers N (1000) --missed M (100) --concurrency K\n"
          "             --settle MS (500): N live-protocol clients (/live)\n"
          "             drop, M are published, they reconnect and recover\n");
  exit(2);
}

/* ---- small helpers -------------------------------------------------------- */

static void die(const char *format, ...) {
  va_list args;
  va_start(args, format);
  fputs("loadgen: ", stderr);
  vfprintf(stderr, format, args);
  fputc('\n', stderr);
  va_end(args);
  exit(1);
}

static void *xrealloc(void *p, size_t size) {
  void *q = realloc(p, size);
  if (q == NULL) die("out of memory");
  return q;
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static double cpu_seconds(void) {
  struct rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  return (double)usage.ru_utime.tv_sec + usage.ru_utime.tv_usec / 1e6 +
         (double)usage.ru_stime.tv_sec + usage.ru_stime.tv_usec / 1e6;
}

/* xorshift64*, seeded from getrandom(2): keys and masks need not be secret. */
static uint64_t rng_state;

static uint64_t rng_next(void) {
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 0x2545F4914F6CDD1Dull;
}

static void rng_seed(void) {
  if (getrandom(&rng_state, sizeof rng_state, 0) != sizeof rng_state) {
    rng_state = now_ns() ^ ((uint64_t)getpid() << 32);
  }
  if (rng_state == 0) rng_state = 0x9E3779B97F4A7C15ull;
}

/* ---- SHA-1 (FIPS 180-4) and base64, for Sec-WebSocket-Accept (RFC 6455 §4.2.2) */

static uint32_t rol32(uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }

static void sha1_block(uint32_t h[5], const uint8_t *p) {
  uint32_t w[80];
  for (int t = 0; t < 16; t++) {
    w[t] = (uint32_t)p[4 * t] << 24 | (uint32_t)p[4 * t + 1] << 16 |
           (uint32_t)p[4 * t + 2] << 8 | (uint32_t)p[4 * t + 3];
  }
  for (int t = 16; t < 80; t++) {
    w[t] = rol32(w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16], 1);
  }
  uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
  for (int t = 0; t < 80; t++) {
    uint32_t f, k;
    if (t < 20) {
      f = (b & c) | (~b & d);
      k = 0x5A827999;
    } else if (t < 40) {
      f = b ^ c ^ d;
      k = 0x6ED9EBA1;
    } else if (t < 60) {
      f = (b & c) | (b & d) | (c & d);
      k = 0x8F1BBCDC;
    } else {
      f = b ^ c ^ d;
      k = 0xCA62C1D6;
    }
    uint32_t temp = rol32(a, 5) + f + e + k + w[t];
    e = d;
    d = c;
    c = rol32(b, 30);
    b = a;
    a = temp;
  }
  h[0] += a;
  h[1] += b;
  h[2] += c;
  h[3] += d;
  h[4] += e;
}

static void sha1(const uint8_t *data, size_t length, uint8_t out[20]) {
  uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476,
                   0xC3D2E1F0};
  size_t full = length / 64;
  for (size_t i = 0; i < full; i++) sha1_block(h, data + i * 64);
  uint8_t block[64];
  size_t rest = length % 64;
  memset(block, 0, sizeof block);
  memcpy(block, data + full * 64, rest);
  block[rest] = 0x80;
  if (rest >= 56) {
    sha1_block(h, block);
    memset(block, 0, sizeof block);
  }
  uint64_t bits = (uint64_t)length * 8;
  for (int i = 0; i < 8; i++) block[63 - i] = (uint8_t)(bits >> (8 * i));
  sha1_block(h, block);
  for (int i = 0; i < 5; i++) {
    out[4 * i] = (uint8_t)(h[i] >> 24);
    out[4 * i + 1] = (uint8_t)(h[i] >> 16);
    out[4 * i + 2] = (uint8_t)(h[i] >> 8);
    out[4 * i + 3] = (uint8_t)h[i];
  }
}

/* Writes base64 of `length` bytes and a NUL; `out` holds 4*ceil(n/3)+1. */
static void base64(const uint8_t *in, size_t length, char *out) {
  static const char digits[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t i = 0;
  for (; i + 3 <= length; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
    *out++ = digits[v >> 18];
    *out++ = digits[(v >> 12) & 63];
    *out++ = digits[(v >> 6) & 63];
    *out++ = digits[v & 63];
  }
  if (length - i == 1) {
    uint32_t v = (uint32_t)in[i] << 16;
    *out++ = digits[v >> 18];
    *out++ = digits[(v >> 12) & 63];
    *out++ = '=';
    *out++ = '=';
  } else if (length - i == 2) {
    uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
    *out++ = digits[v >> 18];
    *out++ = digits[(v >> 12) & 63];
    *out++ = digits[(v >> 6) & 63];
    *out++ = '=';
  }
  *out = '\0';
}

/* The accept value for a 24-character key: base64(SHA-1(key + GUID)). */
static void accept_for(const char *key, char out[29]) {
  static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  uint8_t input[24 + sizeof guid - 1];
  uint8_t digest[20];
  memcpy(input, key, 24);
  memcpy(input + 24, guid, sizeof guid - 1);
  sha1(input, sizeof input, digest);
  base64(digest, sizeof digest, out);
}

/* ---- latency histogram ------------------------------------------------- */
/*
 * Log-linear buckets of nanoseconds (as HdrHistogram): exact below 256 ns,
 * then 128 buckets per power of two (under 0.8% error), in a fixed 60 KiB
 * however many values: a fan-out run records tens of millions.
 */
#define HIST_SUB_BITS 8
#define HIST_HALF (1 << (HIST_SUB_BITS - 1))
#define HIST_BUCKETS (64 * HIST_HALF + HIST_HALF)

struct histogram {
  uint64_t buckets[HIST_BUCKETS];
  uint64_t count;
};

/* Every mode's latencies; recover mode's two recovery times. */
static struct histogram latency, recovery, resubscribe;

static void hist_add(struct histogram *h, uint64_t v) {
  int index;
  if (v < (1u << HIST_SUB_BITS)) {
    index = (int)v;
  } else {
    int msb = 63 - __builtin_clzll(v);
    int shift = msb - (HIST_SUB_BITS - 1);
    index = shift * HIST_HALF + (int)(v >> shift);
  }
  h->buckets[index]++;
  h->count++;
}

/* The value at quantile q (nearest rank), in µs, from the bucket's middle. */
static double hist_quantile_us(const struct histogram *h, double q) {
  if (h->count == 0) return -1;
  uint64_t rank = (uint64_t)(q * (double)h->count + 0.999999999);
  if (rank < 1) rank = 1;
  uint64_t seen = 0;
  for (int i = 0; i < HIST_BUCKETS; i++) {
    seen += h->buckets[i];
    if (seen < rank) continue;
    if (i < (1 << HIST_SUB_BITS)) return i / 1000.0;
    int shift = i / HIST_HALF - 1;
    uint64_t low = (uint64_t)(i % HIST_HALF + HIST_HALF) << shift;
    return ((double)low + (double)((uint64_t)1 << shift) / 2) / 1000.0;
  }
  return -1;
}

/* ---- connections ------------------------------------------------------- */

/* ROLE_LIVE: a client of the live protocol (JSON text frames, /live). */
enum role { ROLE_ECHO, ROLE_IDLE, ROLE_PUB, ROLE_SUB, ROLE_LIVE };
/* A live client's progress: its commands answered, then its publications. */
enum live_state { LIVE_CONNECTING, LIVE_SUBSCRIBING, LIVE_SUBSCRIBED,
                  LIVE_RECOVERED, LIVE_FAILED };
enum state { ST_CONNECTING, ST_HANDSHAKE, ST_OPEN, ST_DONE };

#define OPCODE_CONTINUATION 0
#define OPCODE_TEXT 1
#define OPCODE_BINARY 2
#define OPCODE_CLOSE 8
#define OPCODE_PING 9
#define MAX_HEAD 8192
/* Frames whose payload is looked at (control frames, fan-out messages). */
#define MAX_KEPT_PAYLOAD 65536
#define SCRATCH_SIZE (256 * 1024)

struct conn {
  int fd;
  enum role role;
  enum state state;
  uint32_t id;
  int events_out; /* EPOLLOUT registered */
  int measured;   /* handshake mode: latency counted */
  int close_sent;
  uint64_t started; /* connect() time */
  char accept[29];
  /* Bytes to send before (or between) echo frames: request, pongs, close. */
  uint8_t *out;
  size_t out_len, out_off, out_cap;
  /* Echo frames to send, from the shared block of pre-encoded frames. */
  size_t data_pending, data_pos;
  /* Bytes read but not yet parsed (a partial header or kept frame). */
  uint8_t *left;
  size_t left_len, left_cap;
  /* Frame parser: payload bytes to skip, and the message in progress. */
  uint64_t skip;
  int frame_opcode, message_opcode, fin;
  /* Echo: send times of the messages in flight (FIFO), echoes this read. */
  uint32_t outstanding, fifo_head, fifo_tail, echoed_now;
  uint64_t *fifo;
  uint64_t counted;
  /* Subscriber: the sequence number it expects next. */
  uint64_t expected;
  int ready;
  /* Subscriber: its last delivery in the measured window (or the window's
     start), and the longest wait between two (the stall). */
  uint64_t last_delivery, max_gap;
  /* Storm: when it had its first hello after reconnecting. */
  uint64_t back;
  /* The number of the last hello it had. */
  uint64_t hello;
  /* Live client: its state, the last position it saw (the one it
     resubscribes from after a reconnection), when it sent that `sub`, and
     how many of the missed publications it has had since. */
  enum live_state live;
  uint64_t offset, since, sub_sent, got;
  char epoch[64];
};

static struct {
  int epfd;
  uint8_t key[4];
  uint8_t *block; /* echo: `inflight` pre-masked frames, back to back */
  size_t frame_size;
  uint8_t *scratch;
  struct conn **conns;
  uint32_t conn_count, conn_cap;
  uint64_t now;
  int counting;
  /* Connection setup (every mode). */
  uint32_t launched, opened, connecting, failed_open;
  /* Echo. */
  int sending;
  uint64_t messages, closed, echo_errors;
  /* Handshake. */
  uint64_t storm_ok, storm_errors, idle_errors, dropped, storm_first,
      storm_last, storm_back;
  /* Fan-out. */
  struct conn *publisher;
  uint32_t *remaining; /* per window slot: subscribers still to deliver */
  uint8_t *payload;    /* the publisher's message, `size` bytes */
  uint64_t next_seq, oldest, published, deliveries, missing, out_of_order,
      bad_messages, dead_subs, undelivered;
  uint32_t active_subs;
  int publishing;
  /* The hellos sent before the run, and the newest any subscriber had. */
  uint64_t hellos_sent, hello_seen;
  uint32_t reports;
  /* Recover: the first reconnecting client, and what the clients found. */
  uint32_t recover_first;
  uint64_t recovered, not_recovered, live_errors, duplicates, wrong_data;
} g;

static void conn_fail(struct conn *c, const char *why);

static void set_events(struct conn *c, int want_out) {
  if (c->events_out == want_out) return;
  struct epoll_event ev = {.events = EPOLLIN | (want_out ? EPOLLOUT : 0),
                           .data.ptr = c};
  if (epoll_ctl(g.epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0) {
    die("epoll_ctl: %s", strerror(errno));
  }
  c->events_out = want_out;
}

static uint8_t *out_reserve(struct conn *c, size_t n) {
  if (c->out_len + n > c->out_cap) {
    c->out_cap = (c->out_len + n) * 2;
    c->out = xrealloc(c->out, c->out_cap);
  }
  uint8_t *at = c->out + c->out_len;
  c->out_len += n;
  return at;
}

/* Writes a masked client frame header (RFC 6455 §5.2); returns its size. */
static size_t frame_header(uint8_t *at, int opcode, uint64_t length) {
  size_t n = 0;
  at[n++] = (uint8_t)(0x80 | opcode);
  if (length < 126) {
    at[n++] = (uint8_t)(0x80 | length);
  } else if (length < 65536) {
    at[n++] = 0x80 | 126;
    at[n++] = (uint8_t)(length >> 8);
    at[n++] = (uint8_t)length;
  } else {
    at[n++] = 0x80 | 127;
    for (int i = 7; i >= 0; i--) at[n++] = (uint8_t)(length >> (8 * i));
  }
  memcpy(at + n, g.key, 4);
  return n + 4;
}

static size_t frame_size_for(uint64_t length) {
  return 6 + (length < 126 ? 0 : length < 65536 ? 2 : 8) + length;
}

/* Queues one masked frame on the connection's byte queue. */
static void out_frame(struct conn *c, int opcode, const uint8_t *payload,
                      size_t length) {
  uint8_t *at = out_reserve(c, frame_size_for(length));
  size_t header = frame_header(at, opcode, length);
  for (size_t i = 0; i < length; i++) {
    at[header + i] = payload[i] ^ g.key[i & 3];
  }
}

/*
 * Sends what is queued until the kernel takes no more. The byte queue goes
 * only between whole echo frames, so a pong never lands inside one.
 * Returns -1 when the connection failed (it is then closed).
 */
static int conn_flush(struct conn *c) {
  for (;;) {
    const uint8_t *p;
    size_t n;
    int data;
    if (c->out_off < c->out_len && c->data_pos == 0) {
      p = c->out + c->out_off;
      n = c->out_len - c->out_off;
      data = 0;
    } else if (c->data_pending > 0) {
      p = g.block + c->data_pos;
      n = c->data_pending;
      data = 1;
    } else {
      break;
    }
    ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        set_events(c, 1);
        return 0;
      }
      conn_fail(c, strerror(errno));
      return -1;
    }
    if (data) {
      c->data_pending -= (size_t)w;
      c->data_pos = (c->data_pos + (size_t)w) % g.frame_size;
    } else {
      c->out_off += (size_t)w;
      if (c->out_off == c->out_len) c->out_off = c->out_len = 0;
    }
  }
  set_events(c, 0);
  return 0;
}

static void conn_close_fd(struct conn *c) {
  if (c->fd >= 0) close(c->fd);
  c->fd = -1;
  c->state = ST_DONE;
}

static struct conn *conn_start(enum role role, const char *path,
                               int measured) {
  struct conn *c = calloc(1, sizeof *c);
  if (c == NULL) die("out of memory");
  c->role = role;
  c->measured = measured;
  c->id = g.conn_count;
  c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (c->fd < 0) die("socket: %s", strerror(errno));
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (g.conn_count == g.conn_cap) {
    g.conn_cap = g.conn_cap ? g.conn_cap * 2 : 1024;
    g.conns = xrealloc(g.conns, g.conn_cap * sizeof *g.conns);
  }
  /* With --port2, odd subscribers go to the second server. */
  int port = opt.port2 != 0 && role == ROLE_SUB && g.launched % 2 == 1
                 ? opt.port2
                 : opt.port;
  g.conns[g.conn_count++] = c;
  g.launched++;
  g.connecting++;
  /* The upgrade request (RFC 6455 §4.1), with a fresh random key. */
  uint8_t nonce[16];
  uint64_t r1 = rng_next(), r2 = rng_next();
  memcpy(nonce, &r1, 8);
  memcpy(nonce + 8, &r2, 8);
  char key[25];
  base64(nonce, 16, key);
  accept_for(key, c->accept);
  char request[512];
  int n = snprintf(request, sizeof request,
                   "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                   "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n",
                   path, port, key);
  if (n <= 0 || (size_t)n >= sizeof request) die("path too long");
  memcpy(out_reserve(c, (size_t)n), request, (size_t)n);
  struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
  c->events_out = 1;
  if (epoll_ctl(g.epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
    die("epoll_ctl: %s", strerror(errno));
  }
  struct sockaddr_in addr = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  c->started = now_ns();
  c->state = ST_CONNECTING;
  if (connect(c->fd, (struct sockaddr *)&addr, sizeof addr) < 0 &&
      errno != EINPROGRESS) {
    conn_fail(c, strerror(errno));
  }
  return c;
}

static void on_open(struct conn *c);
static void on_message(struct conn *c, int opcode, const uint8_t *payload,
                       uint64_t length);
static void on_closed(struct conn *c, int clean, int was_open);

static void conn_fail(struct conn *c, const char *why) {
  if (c->state == ST_DONE) return;
  int was_connecting = c->state != ST_OPEN;
  conn_close_fd(c);
  if (was_connecting) {
    g.connecting--;
    g.failed_open++;
    if (g.failed_open <= 5) {
      fprintf(stderr, "loadgen: connection %u failed to open: %s\n", c->id,
              why);
    }
    on_closed(c, 0, 0);
    return;
  }
  if (g.reports++ < 10) {
    fprintf(stderr, "loadgen: connection %u failed: %s\n", c->id, why);
  }
  on_closed(c, 0, 1);
}

static const char *find_head_end(const uint8_t *p, size_t n) {
  for (size_t i = 3; i < n; i++) {
    if (p[i] == '\n' && p[i - 1] == '\r' && p[i - 2] == '\n' &&
        p[i - 3] == '\r') {
      return (const char *)p + i + 1;
    }
  }
  return NULL;
}

/* Checks the `101` status and Sec-WebSocket-Accept (RFC 6455 §4.2.2). */
static const char *check_head(struct conn *c, const char *head, size_t n) {
  if (n < 12 || memcmp(head, "HTTP/1.1 101", 12) != 0) {
    return "the server did not answer 101";
  }
  static const char name[] = "\r\nsec-websocket-accept:";
  size_t name_length = sizeof name - 1;
  for (size_t i = 0; i + name_length < n; i++) {
    if (strncasecmp(head + i, name, name_length) != 0) continue;
    const char *v = head + i + name_length;
    const char *end = head + n;
    while (v < end && (*v == ' ' || *v == '\t')) v++;
    const char *e = v;
    while (e < end && *e != '\r') e++;
    while (e > v && (e[-1] == ' ' || e[-1] == '\t')) e--;
    if ((size_t)(e - v) == 28 && memcmp(v, c->accept, 28) == 0) return NULL;
    return "wrong Sec-WebSocket-Accept";
  }
  return "no Sec-WebSocket-Accept";
}

static void send_close(struct conn *c) {
  if (c->close_sent || c->state != ST_OPEN) return;
  static const uint8_t normal[2] = {0x03, 0xe8}; /* 1000 */
  c->close_sent = 1;
  out_frame(c, OPCODE_CLOSE, normal, 2);
  conn_flush(c);
}

/* A control frame, whole (§5.5): answer pings, finish on close. */
static void on_control(struct conn *c, int opcode, const uint8_t *payload,
                       uint64_t length) {
  if (opcode == OPCODE_PING) {
    out_frame(c, 0xA, payload, (size_t)length);
    conn_flush(c);
  } else if (opcode == OPCODE_CLOSE) {
    if (!c->close_sent) {
      /* The server closed first: echo its code (§5.5.1), then count it. */
      c->close_sent = 1;
      out_frame(c, OPCODE_CLOSE, payload, length >= 2 ? 2 : 0);
      conn_flush(c);
      if (c->state == ST_DONE) return;
      conn_close_fd(c);
      if (g.reports++ < 10) {
        unsigned code = length >= 2 ? (unsigned)(payload[0] << 8 | payload[1])
                                    : 1005;
        fprintf(stderr, "loadgen: the server closed connection %u (%u)\n",
                c->id, code);
      }
      on_closed(c, 0, 1);
    } else {
      conn_close_fd(c);
      on_closed(c, 1, 1);
    }
  }
  /* Pongs are ignored. */
}

/*
 * Parses server frames (unmasked, §5.1) in `p[0..n)`; returns how many bytes
 * it used. Echo payloads are skipped (counted, never copied); control frames
 * and subscribers' messages are handled whole.
 */
static size_t parse_frames(struct conn *c, const uint8_t *p, size_t n) {
  size_t pos = 0;
  while (pos < n && c->state == ST_OPEN) {
    if (c->skip > 0) {
      uint64_t take = c->skip < n - pos ? c->skip : n - pos;
      c->skip -= take;
      pos += (size_t)take;
      if (c->skip == 0 && c->fin) on_message(c, c->message_opcode, NULL, 0);
      continue;
    }
    size_t avail = n - pos;
    if (avail < 2) break;
    uint8_t b0 = p[pos], b1 = p[pos + 1];
    if (b1 & 0x80) {
      conn_fail(c, "the server sent a masked frame");
      break;
    }
    uint64_t length = b1 & 127;
    size_t header = 2 + (length == 126 ? 2 : length == 127 ? 8 : 0);
    if (avail < header) break;
    if (length == 126) {
      length = (uint64_t)p[pos + 2] << 8 | p[pos + 3];
    } else if (length == 127) {
      length = 0;
      for (int i = 0; i < 8; i++) length = length << 8 | p[pos + 2 + i];
    }
    int opcode = b0 & 15;
    int fin = (b0 & 0x80) != 0;
    int control = opcode >= 8;
    if (control || c->role == ROLE_SUB || c->role == ROLE_LIVE) {
      if (length > MAX_KEPT_PAYLOAD) {
        conn_fail(c, "a frame too large to look at");
        break;
      }
      if (avail < header + length) break; /* wait for the whole frame */
      const uint8_t *payload = p + pos + header;
      pos += header + (size_t)length;
      if (control) {
        on_control(c, opcode, payload, length);
      } else if (!fin || opcode == OPCODE_CONTINUATION) {
        g.bad_messages++;
        if (g.reports++ < 10) {
          fprintf(stderr, "loadgen: subscriber %u got a fragmented message\n",
                  c->id);
        }
      } else {
        on_message(c, opcode, payload, length);
      }
      continue;
    }
    if (opcode != OPCODE_CONTINUATION) c->message_opcode = opcode;
    c->fin = fin;
    pos += header;
    c->skip = length;
    if (length == 0 && fin) on_message(c, c->message_opcode, NULL, 0);
  }
  return pos;
}

static void conn_readable(struct conn *c) {
  for (int round = 0; round < 4 && c->state != ST_DONE; round++) {
    size_t have = c->left_len;
    if (have > 0) memcpy(g.scratch, c->left, have);
    ssize_t r = recv(c->fd, g.scratch + have, SCRATCH_SIZE - have, 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      conn_fail(c, strerror(errno));
      return;
    }
    if (r == 0) {
      conn_fail(c, "the server closed TCP without a close frame");
      return;
    }
    g.now = now_ns();
    size_t total = have + (size_t)r;
    size_t used = 0;
    if (c->state == ST_HANDSHAKE) {
      const char *end = find_head_end(g.scratch, total);
      if (end == NULL) {
        if (total > MAX_HEAD) {
          conn_fail(c, "the response head is too large");
          return;
        }
      } else {
        used = (size_t)((const uint8_t *)end - g.scratch);
        const char *why = check_head(c, (const char *)g.scratch, used);
        if (why != NULL) {
          conn_fail(c, why);
          return;
        }
        c->state = ST_OPEN;
        g.connecting--;
        g.opened++;
        on_open(c);
      }
    }
    if (c->state == ST_OPEN) used += parse_frames(c, g.scratch + used,
                                                  total - used);
    if (c->state == ST_DONE) return;
    c->left_len = total - used;
    if (c->left_len > c->left_cap) {
      c->left_cap = c->left_len;
      c->left = xrealloc(c->left, c->left_cap);
    }
    memmove(c->left, g.scratch + used, c->left_len);
    if (c->role == ROLE_ECHO && c->echoed_now > 0) {
      /* Refill after the whole read: one write per read, not per echo. */
      uint32_t k = c->echoed_now;
      c->echoed_now = 0;
      if (g.sending) {
        for (uint32_t i = 0; i < k; i++) {
          c->fifo[c->fifo_tail] = g.now;
          c->fifo_tail = (c->fifo_tail + 1) % opt.inflight;
        }
        c->outstanding += k;
        c->data_pending += k * g.frame_size;
        conn_flush(c);
      } else if (c->outstanding == 0) {
        send_close(c);
      }
    }
    if ((size_t)r < SCRATCH_SIZE - have) return; /* nothing more queued */
  }
}

static void conn_event(struct conn *c, uint32_t events) {
  if (c->state == ST_DONE) return;
  if (c->state == ST_CONNECTING) {
    if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
    int error = 0;
    socklen_t length = sizeof error;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &error, &length);
    if (error != 0) {
      conn_fail(c, strerror(error));
      return;
    }
    c->state = ST_HANDSHAKE;
    conn_flush(c);
    return;
  }
  if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) conn_readable(c);
  if (c->state != ST_DONE && (events & EPOLLOUT)) conn_flush(c);
}

/* ---- modes -------------------------------------------------------------- */

static void mark(const char *what) {
  fprintf(stderr, "#%s\n", what);
  fflush(stderr);
}

static void live_send(struct conn *c, const char *json) {
  out_frame(c, OPCODE_TEXT, (const uint8_t *)json, strlen(json));
  conn_flush(c);
}

static void on_open(struct conn *c) {
  if ((opt.mode == MODE_HANDSHAKE || opt.mode == MODE_STORM ||
       opt.mode == MODE_RECOVER) &&
      c->measured) {
    hist_add(&latency, g.now - c->started);
    g.storm_ok++;
    g.storm_last = g.now;
  }
  if (c->role == ROLE_ECHO) {
    c->fifo = calloc(opt.inflight, sizeof *c->fifo);
    if (c->fifo == NULL) die("out of memory");
  }
  if (c->role != ROLE_LIVE) return;
  if (c->measured) {
    /* Reconnected: it resubscribes from where the client it replaces was. */
    const struct conn *was = g.conns[c->id - g.recover_first];
    c->since = was->offset;
    memcpy(c->epoch, was->epoch, sizeof c->epoch);
  }
  /* As LiveClient does: `connect` on open, `sub` once it is answered. */
  live_send(c, "{\"t\":\"connect\",\"v\":1}");
}

static void on_closed(struct conn *c, int clean, int was_open) {
  if (opt.mode == MODE_HANDSHAKE) {
    /* Failed handshakes are counted as failed_open; these were open. */
    if (was_open) g.dropped++;
    return;
  }
  if (opt.mode == MODE_ECHO) {
    if (clean) {
      g.closed++;
    } else {
      g.echo_errors++;
    }
    return;
  }
  if (c->role == ROLE_LIVE) {
    /* One that reconnected and failed before it recovered: not back (one
       that failed to open is counted as such). */
    if (c->measured && c->live < LIVE_RECOVERED) {
      c->live = LIVE_FAILED;
      if (was_open) g.live_errors++;
    }
    return;
  }
  /* Fan-out. */
  if (c->role == ROLE_PUB) {
    if (g.publishing || !clean) die("the publisher's connection ended");
    return;
  }
  if (c->role == ROLE_SUB && !clean && c->ready) {
    /* What it will never get counts as missing, so the window moves on. */
    g.dead_subs++;
    g.active_subs--;
    for (uint64_t q = c->expected; q < g.next_seq; q++) {
      if (q >= g.oldest && g.remaining[q % opt.window] > 0) {
        g.remaining[q % opt.window]--;
        g.missing++;
      }
    }
    while (g.oldest < g.next_seq && g.remaining[g.oldest % opt.window] == 0) {
      g.oldest++;
    }
  }
}

static void fan_resolve(uint64_t q) {
  if (q < g.oldest || q >= g.next_seq) return;
  uint32_t *r = &g.remaining[q % opt.window];
  if (*r > 0) (*r)--;
  while (g.oldest < g.next_seq && g.remaining[g.oldest % opt.window] == 0) {
    g.oldest++;
  }
}

static int parse_digits(const uint8_t *p, int n, uint64_t *out) {
  uint64_t v = 0;
  for (int i = 0; i < n; i++) {
    if (p[i] < '0' || p[i] > '9') return -1;
    v = v * 10 + (uint64_t)(p[i] - '0');
  }
  *out = v;
  return 0;
}

static void on_live_event(struct conn *c, const uint8_t *payload,
                          size_t length);

static void on_message(struct conn *c, int opcode, const uint8_t *payload,
                       uint64_t length) {
  (void)opcode;
  if (c->role == ROLE_LIVE) {
    on_live_event(c, payload, (size_t)length);
    return;
  }
  if (c->role == ROLE_ECHO) {
    if (c->outstanding == 0) {
      conn_fail(c, "the server echoed more messages than were sent");
      return;
    }
    c->outstanding--;
    uint64_t sent = c->fifo[c->fifo_head];
    c->fifo_head = (c->fifo_head + 1) % opt.inflight;
    c->echoed_now++;
    if (g.counting) {
      hist_add(&latency, g.now - sent);
      c->counted++;
      g.messages++;
    }
    return;
  }
  if (c->role != ROLE_SUB) return;
  if (length >= 5 && memcmp(payload, "hello", 5) == 0) {
    uint64_t number = 0;
    if (length > 6) parse_digits(payload + 6, (int)length - 6, &number);
    if (number > g.hello_seen) g.hello_seen = number;
    c->hello = number;
    if (!c->ready && c->measured) {
      c->back = g.now;
      if (g.now > g.storm_back) g.storm_back = g.now;
    }
    c->ready = 1;
    return;
  }
  uint64_t seq, sent;
  if (length < 41 || parse_digits(payload, 20, &seq) < 0 ||
      parse_digits(payload + 21, 20, &sent) < 0) {
    g.bad_messages++;
    if (g.reports++ < 10) {
      fprintf(stderr, "loadgen: subscriber %u got a malformed message\n",
              c->id);
    }
    return;
  }
  if (seq >= g.next_seq) {
    g.bad_messages++;
    if (g.reports++ < 10) {
      fprintf(stderr, "loadgen: subscriber %u got %" PRIu64
              ", never published\n", c->id, seq);
    }
    return;
  }
  if (seq < c->expected) {
    g.out_of_order++;
    if (g.reports++ < 10) {
      fprintf(stderr, "loadgen: subscriber %u got %" PRIu64
              " after %" PRIu64 " (out of order)\n", c->id, seq,
              c->expected - 1);
    }
    return;
  }
  if (seq > c->expected) {
    g.missing += seq - c->expected;
    if (g.reports++ < 10) {
      fprintf(stderr, "loadgen: subscriber %u expected %" PRIu64
              ", got %" PRIu64 " (%" PRIu64 " missing)\n", c->id,
              c->expected, seq, seq - c->expected);
    }
    for (uint64_t q = c->expected; q < seq; q++) fan_resolve(q);
  }
  c->expected = seq + 1;
  if (g.counting) {
    g.deliveries++;
    hist_add(&latency, g.now > sent ? g.now - sent : 0);
    if (g.now - c->last_delivery > c->max_gap) {
      c->max_gap = g.now - c->last_delivery;
    }
    c->last_delivery = g.now;
  }
  fan_resolve(seq);
}

/*
 * The live protocol's events are JSON.stringify's output: flat apart from
 * `position`, each key once, no escapes in what is read here (topic, epoch,
 * the publications' digits). So a key is found by its text.
 */
static const uint8_t *json_after(const uint8_t *p, size_t n, const char *key,
                                 size_t *rest) {
  char needle[32];
  int k = snprintf(needle, sizeof needle, "\"%s\":", key);
  const uint8_t *at = memmem(p, n, needle, (size_t)k);
  if (at == NULL) return NULL;
  at += k;
  *rest = n - (size_t)(at - p);
  return at;
}

/* A JSON string's characters (no escapes), or NULL. */
static const uint8_t *json_string(const uint8_t *p, size_t n, const char *key,
                                  size_t *length) {
  size_t rest;
  const uint8_t *at = json_after(p, n, key, &rest);
  if (at == NULL || rest < 2 || at[0] != '"') return NULL;
  const uint8_t *end = memchr(at + 1, '"', rest - 1);
  if (end == NULL) return NULL;
  *length = (size_t)(end - at - 1);
  return at + 1;
}

static int json_number(const uint8_t *p, size_t n, const char *key,
                       uint64_t *value) {
  size_t rest, digits = 0;
  const uint8_t *at = json_after(p, n, key, &rest);
  if (at == NULL) return -1;
  while (digits < rest && digits < 19 && at[digits] >= '0' && at[digits] <= '9')
    digits++;
  if (digits == 0) return -1;
  return parse_digits(at, (int)digits, value);
}

static int json_is(const uint8_t *value, size_t length, const char *text) {
  return value != NULL && length == strlen(text) &&
         memcmp(value, text, length) == 0;
}

/*
 * Counts a live client's fault; one that reconnected is then done. Before
 * the drop, the run cannot go on (a server whose topic keeps no history).
 */
static void live_fault(struct conn *c, const char *why, const uint8_t *p,
                       size_t n) {
  if (!c->measured) {
    die("live client %u: %s: %.*s", c->id, why, (int)(n > 200 ? 200 : n),
        (const char *)p);
  }
  g.live_errors++;
  c->live = LIVE_FAILED;
  if (g.reports++ < 10) {
    fprintf(stderr, "loadgen: live client %u: %s: %.*s\n", c->id, why,
            (int)(n > 200 ? 200 : n), (const char *)p);
  }
}

/* A reconnected client's publication: the next missed one, in order. */
static void live_recovering(struct conn *c, uint64_t offset,
                            const uint8_t *data, size_t data_length) {
  uint64_t expected = c->since + c->got + 1;
  if (offset < expected) {
    g.duplicates++;
    if (g.reports++ < 10) {
      fprintf(stderr, "loadgen: live client %u got offset %" PRIu64
              " again (or out of order), expected %" PRIu64 "\n", c->id,
              offset, expected);
    }
    return;
  }
  if (offset > expected) {
    g.missing += offset - expected;
    if (g.reports++ < 10) {
      fprintf(stderr, "loadgen: live client %u expected offset %" PRIu64
              ", got %" PRIu64 "\n", c->id, expected, offset);
    }
  }
  c->got = offset - c->since;
  c->offset = offset;
  /* The missed publications carry their sequence numbers, from 0. */
  uint64_t seq;
  if (data_length < 20 || parse_digits(data, 20, &seq) < 0 ||
      seq != c->got - 1) {
    g.wrong_data++;
    if (g.reports++ < 10) {
      fprintf(stderr, "loadgen: live client %u got \"%.*s\" at offset %" PRIu64
              ", not publication %" PRIu64 "\n", c->id,
              (int)(data_length > 40 ? 40 : data_length), (const char *)data,
              offset, c->got - 1);
    }
  }
  if (c->got > opt.missed) {
    live_fault(c, "a publication that was never made", data, data_length);
    return;
  }
  if (c->got == opt.missed && c->live == LIVE_SUBSCRIBED) {
    c->live = LIVE_RECOVERED;
    g.recovered++;
    if (g.now > g.storm_back) g.storm_back = g.now;
    hist_add(&recovery, g.now - c->started);
    hist_add(&resubscribe, g.now - c->sub_sent);
  }
}

/*
 * An event of the live protocol: `connected` (then `sub`, from the last
 * position after a reconnection), `subscribed`, `pub`; anything else is a
 * fault. Before the drop a client keeps the position of each publication
 * (hellos); after it, it checks what it recovers.
 */
static void on_live_event(struct conn *c, const uint8_t *p, size_t n) {
  /* A client's first fault is counted; what it gets after is not. */
  if (c->live == LIVE_FAILED) return;
  size_t type_length = 0, epoch_length = 0, data_length = 0;
  const uint8_t *type = json_string(p, n, "t", &type_length);
  if (json_is(type, type_length, "connected") && c->live == LIVE_CONNECTING) {
    char sub[160];
    if (c->measured) {
      snprintf(sub, sizeof sub,
               "{\"t\":\"sub\",\"id\":1,\"topic\":\"t\",\"since\":"
               "{\"offset\":%" PRIu64 ",\"epoch\":\"%s\"}}",
               c->since, c->epoch);
      c->sub_sent = g.now;
    } else {
      snprintf(sub, sizeof sub, "{\"t\":\"sub\",\"id\":1,\"topic\":\"t\"}");
    }
    c->live = LIVE_SUBSCRIBING;
    live_send(c, sub);
    return;
  }
  uint64_t offset = 0;
  const uint8_t *epoch = json_string(p, n, "epoch", &epoch_length);
  if (epoch == NULL || epoch_length >= sizeof c->epoch ||
      json_number(p, n, "offset", &offset) < 0) {
    live_fault(c, "an unexpected event (a topic without history?)", p, n);
    return;
  }
  if (json_is(type, type_length, "subscribed") &&
      c->live == LIVE_SUBSCRIBING) {
    size_t rest;
    const uint8_t *recovered = json_after(p, n, "recovered", &rest);
    if (!c->measured) {
      c->offset = offset;
      memcpy(c->epoch, epoch, epoch_length);
      c->epoch[epoch_length] = '\0';
    } else if (recovered == NULL || rest < 4 ||
               memcmp(recovered, "true", 4) != 0) {
      g.not_recovered++;
      c->live = LIVE_FAILED;
      if (g.reports++ < 10) {
        fprintf(stderr, "loadgen: live client %u was not recovered: %.*s\n",
                c->id, (int)n, (const char *)p);
      }
      return;
    } else if (!json_is(epoch, epoch_length, c->epoch) ||
               offset != c->since + opt.missed) {
      live_fault(c, "recovered to another position", p, n);
      return;
    }
    c->live = LIVE_SUBSCRIBED;
    return;
  }
  const uint8_t *data = json_string(p, n, "data", &data_length);
  if (!json_is(type, type_length, "pub") || data == NULL ||
      c->live < LIVE_SUBSCRIBED || !json_is(epoch, epoch_length, c->epoch)) {
    live_fault(c, "an unexpected event", p, n);
    return;
  }
  if (c->measured) {
    live_recovering(c, offset, data, data_length);
    return;
  }
  /* Before the drop: hellos, the last of which it resubscribes from. */
  if (offset <= c->offset) {
    live_fault(c, "a publication again", p, n);
    return;
  }
  c->offset = offset;
  uint64_t number = 0;
  if (data_length > 6 && memcmp(data, "hello ", 6) == 0 &&
      parse_digits(data + 6, (int)data_length - 6, &number) == 0) {
    if (number > g.hello_seen) g.hello_seen = number;
    c->hello = number;
    c->ready = 1;
  }
}

/* The publisher sends while fewer than `window` messages are incomplete. */
static void publish_more(void) {
  struct conn *c = g.publisher;
  if (!g.publishing || c->state != ST_OPEN) return;
  if (g.next_seq - g.oldest >= opt.window) return;
  while (g.next_seq - g.oldest < opt.window) {
    uint8_t *payload = g.payload;
    uint64_t seq = g.next_seq++;
    char digits[48];
    int n = snprintf(digits, sizeof digits, "%020" PRIu64 " %020" PRIu64, seq,
                     now_ns());
    memcpy(payload, digits, (size_t)n);
    g.remaining[seq % opt.window] = g.active_subs;
    out_frame(c, OPCODE_TEXT, payload, opt.size);
    if (g.counting) g.published++;
  }
  conn_flush(c);
}

/* Starts connections while fewer than `concurrency` are opening. */
static void launch(uint32_t total, enum role role, const char *path,
                   int measured) {
  while (g.launched < total && g.connecting < opt.concurrency) {
    conn_start(role, path, measured);
  }
}

static uint64_t ms_ns(uint64_t ms) { return ms * 1000000u; }

static int compare_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static void poll_once(int timeout_ms) {
  static struct epoll_event events[1024];
  int n = epoll_wait(g.epfd, events, 1024, timeout_ms);
  if (n < 0 && errno != EINTR) die("epoll_wait: %s", strerror(errno));
  g.now = now_ns();
  for (int i = 0; i < n; i++) conn_event(events[i].data.ptr, events[i].events);
  g.now = now_ns();
}

static int until_ms(uint64_t deadline) {
  if (deadline <= g.now) return 0;
  uint64_t ms = (deadline - g.now + 999999) / 1000000;
  return ms > 50 ? 50 : (int)ms;
}

static uint64_t run_deadline;

static void check_timeout(const char *phase) {
  if (g.now > run_deadline) die("timed out while %s", phase);
}

/* Opens `count` connections of one role, `concurrency` at a time. */
static void open_all(uint32_t count, enum role role, const char *path) {
  uint32_t target = g.launched + count;
  while (g.opened + g.failed_open < target) {
    launch(target, role, path, 0);
    poll_once(50);
    check_timeout("opening connections");
  }
}

static void run_echo(void) {
  g.frame_size = frame_size_for(opt.size);
  g.block = malloc(g.frame_size * opt.inflight);
  uint8_t *payload = malloc(opt.size ? opt.size : 1);
  if (g.block == NULL || payload == NULL) die("out of memory");
  for (uint32_t i = 0; i < opt.size; i++) payload[i] = (uint8_t)('a' + i % 26);
  for (uint32_t f = 0; f < opt.inflight; f++) {
    uint8_t *at = g.block + f * g.frame_size;
    size_t header =
        frame_header(at, opt.binary ? OPCODE_BINARY : OPCODE_TEXT, opt.size);
    for (uint32_t i = 0; i < opt.size; i++) {
      at[header + i] = payload[i] ^ g.key[i & 3];
    }
  }
  free(payload);
  open_all(opt.connections, ROLE_ECHO, opt.path);
  if (g.failed_open > 0) die("%u connection(s) failed to open", g.failed_open);
  g.sending = 1;
  g.now = now_ns();
  for (uint32_t i = 0; i < g.conn_count; i++) {
    struct conn *c = g.conns[i];
    for (uint32_t k = 0; k < opt.inflight; k++) c->fifo[k] = g.now;
    c->fifo_tail = 0;
    c->outstanding = opt.inflight;
    c->data_pending = opt.inflight * g.frame_size;
    conn_flush(c);
  }
  uint64_t start = g.now + ms_ns(opt.warmup_ms);
  while (g.now < start) poll_once(until_ms(start));
  mark("start");
  double cpu0 = cpu_seconds();
  uint64_t t0 = now_ns();
  g.counting = 1;
  uint64_t end = t0 + ms_ns(opt.duration_ms);
  while (g.now < end) poll_once(until_ms(end));
  g.counting = 0;
  uint64_t t1 = now_ns();
  double cpu = cpu_seconds() - cpu0;
  mark("end");
  /* Stop sending; close each connection once its messages are back. */
  g.sending = 0;
  for (uint32_t i = 0; i < g.conn_count; i++) {
    struct conn *c = g.conns[i];
    if (c->state == ST_OPEN && c->outstanding == 0) send_close(c);
  }
  uint64_t close_deadline = g.now + ms_ns(opt.drain_ms);
  while (g.closed + g.echo_errors < g.conn_count && g.now < close_deadline) {
    poll_once(until_ms(close_deadline));
  }
  double seconds = (double)(t1 - t0) / 1e9;
  uint64_t lo = UINT64_MAX, hi = 0;
  for (uint32_t i = 0; i < g.conn_count; i++) {
    uint64_t v = g.conns[i]->counted;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  uint64_t unclean = g.conn_count - g.closed - g.echo_errors;
  printf("{\"mode\":\"echo\",\"connections\":%u,\"inFlight\":%u,\"size\":%u,"
         "\"seconds\":%.6f,\"messages\":%" PRIu64 ",\"msgs\":%.1f,"
         "\"p50Us\":%.2f,\"p99Us\":%.2f,\"connMinMsgs\":%.1f,"
         "\"connMaxMsgs\":%.1f,\"errors\":%" PRIu64 ",\"unclean\":%" PRIu64
         ",\"cpu\":%.1f}\n",
         opt.connections, opt.inflight, opt.size, seconds, g.messages,
         (double)g.messages / seconds, hist_quantile_us(&latency, 0.5),
         hist_quantile_us(&latency, 0.99), (double)lo / seconds,
         (double)hi / seconds,
         g.echo_errors, unclean, cpu / seconds * 100);
}

static void run_handshake(void) {
  open_all(opt.open, ROLE_IDLE, opt.path);
  g.idle_errors = g.failed_open;
  uint32_t target = g.launched + opt.handshakes;
  uint32_t before = g.opened + g.failed_open;
  mark("start");
  double cpu0 = cpu_seconds();
  g.storm_first = g.now = now_ns();
  g.storm_last = g.storm_first;
  while (g.opened + g.failed_open - before < opt.handshakes) {
    launch(target, ROLE_IDLE, opt.path, 1);
    poll_once(50);
    check_timeout("in the handshake storm");
  }
  double cpu = cpu_seconds() - cpu0;
  mark("end");
  g.storm_errors = g.failed_open - g.idle_errors;
  double seconds = (double)(g.storm_last - g.storm_first) / 1e9;
  printf("{\"mode\":\"handshake\",\"open\":%u,\"concurrency\":%u,"
         "\"handshakes\":%" PRIu64 ",\"errors\":%" PRIu64
         ",\"idleErrors\":%" PRIu64 ",\"dropped\":%" PRIu64
         ",\"seconds\":%.6f,\"rate\":%.1f,"
         "\"p50Us\":%.2f,\"p99Us\":%.2f,\"cpu\":%.1f}\n",
         opt.open - (uint32_t)g.idle_errors, opt.concurrency, g.storm_ok,
         g.storm_errors, g.idle_errors, g.dropped, seconds,
         seconds > 0 ? (double)g.storm_ok / seconds : 0,
         hist_quantile_us(&latency, 0.5), hist_quantile_us(&latency, 0.99),
         seconds > 0 ? cpu / seconds * 100 : 0);
  /* Exiting closes every connection at once. */
}

/*
 * Publishes "hello <n>" until subscribers have had one each: with `whole`,
 * every one of the connections from `from` to `to`; else those from `from`
 * on, launched meanwhile up to `launch_total` (one that fails to open is
 * not waited for). A hello goes 20 ms after the last, once some subscriber
 * had it (or 1 s passed): a server that takes longer than 20 ms to deliver
 * one to everyone (10,000 subscribers) would otherwise fall ever further
 * behind. In the storm, 100 ms: a hello sent while every subscriber was
 * away reaches nobody.
 */
static void say_hello(uint32_t from, uint32_t to, int whole,
                      uint32_t launch_total) {
  uint64_t deadline = g.now + ms_ns(30000), next_hello = 0, last_hello = 0;
  for (;;) {
    if (!whole) to = g.conn_count;
    uint32_t waiting = 0;
    for (uint32_t i = from; i < to; i++) {
      struct conn *c = g.conns[i];
      if (c->role != ROLE_SUB && c->role != ROLE_LIVE) continue;
      /* Before the run every subscriber must be there; in the storm, one
         that failed to connect again is counted as an error instead. */
      if (!c->ready && (whole || c->state != ST_DONE)) waiting++;
    }
    if (waiting == 0 && (whole || g.launched >= launch_total)) break;
    if (g.now > deadline) {
      die("%u subscribers got no message in 30 s", waiting);
    }
    if (!whole) launch(launch_total, ROLE_SUB, "/sub", 1);
    if (g.now >= next_hello &&
        (g.hello_seen == g.hellos_sent ||
         g.now >= last_hello + ms_ns(whole ? 1000 : 100))) {
      char hello[32];
      int n = snprintf(hello, sizeof hello, "hello %" PRIu64, ++g.hellos_sent);
      out_frame(g.publisher, OPCODE_TEXT, (const uint8_t *)hello, (size_t)n);
      conn_flush(g.publisher);
      last_hello = g.now;
      next_hello = g.now + ms_ns(20);
    }
    poll_once(until_ms(next_hello));
  }
}

static void run_fanout(void) {
  if (opt.size < 48 || opt.size > MAX_KEPT_PAYLOAD) {
    die("--size must be 48 to %d", MAX_KEPT_PAYLOAD);
  }
  g.remaining = calloc(opt.window, sizeof *g.remaining);
  g.payload = malloc(opt.size);
  if (g.remaining == NULL || g.payload == NULL) die("out of memory");
  memset(g.payload, ' ', opt.size);
  open_all(opt.subscribers, ROLE_SUB, "/sub");
  if (g.failed_open > 0) die("%u subscriber(s) failed to open", g.failed_open);
  open_all(1, ROLE_PUB, "/pub");
  if (g.failed_open > 0) die("the publisher failed to open");
  g.publisher = g.conns[g.conn_count - 1];
  g.active_subs = opt.subscribers;
  /*
   * Servers subscribe a socket some time after its 101 (Deno's on `open`):
   * publish hellos until every subscriber has had one, so that no message
   * of the run is published before all are subscribed.
   */
  say_hello(0, opt.subscribers, 1, 0);
  g.publishing = 1;
  publish_more();
  uint64_t start = g.now + ms_ns(opt.warmup_ms);
  while (g.now < start) {
    poll_once(until_ms(start));
    publish_more();
  }
  mark("start");
  double cpu0 = cpu_seconds();
  uint64_t t0 = now_ns();
  for (uint32_t i = 0; i < opt.subscribers; i++) g.conns[i]->last_delivery = t0;
  g.counting = 1;
  uint64_t end = t0 + ms_ns(opt.duration_ms);
  while (g.now < end) {
    poll_once(until_ms(end));
    publish_more();
  }
  g.counting = 0;
  uint64_t t1 = now_ns();
  double cpu = cpu_seconds() - cpu0;
  mark("end");
  /*
   * The stall: the longest a subscriber waited between two deliveries in
   * the window (its start and end count as deliveries, so a subscriber
   * starved at either edge shows too), the longest of all and the median
   * of each subscriber's longest.
   */
  uint64_t *gaps = calloc(opt.subscribers, sizeof *gaps);
  if (gaps == NULL) die("out of memory");
  uint32_t gap_count = 0;
  for (uint32_t i = 0; i < opt.subscribers; i++) {
    struct conn *c = g.conns[i];
    if (c->state != ST_OPEN) continue;
    uint64_t gap = c->max_gap;
    if (t1 - c->last_delivery > gap) gap = t1 - c->last_delivery;
    gaps[gap_count++] = gap;
  }
  qsort(gaps, gap_count, sizeof *gaps, compare_u64);
  double stall_max = gap_count ? (double)gaps[gap_count - 1] / 1000 : -1;
  double stall_p50 = gap_count ? (double)gaps[(gap_count - 1) / 2] / 1000 : -1;
  free(gaps);
  g.publishing = 0;
  uint64_t drain_deadline = g.now + ms_ns(opt.drain_ms);
  while (g.oldest < g.next_seq && g.now < drain_deadline) {
    poll_once(until_ms(drain_deadline));
  }
  for (uint64_t q = g.oldest; q < g.next_seq; q++) {
    g.undelivered += g.remaining[q % opt.window];
  }
  double seconds = (double)(t1 - t0) / 1e9;
  printf("{\"mode\":\"fanout\",\"subscribers\":%u,\"window\":%u,\"size\":%u,"
         "\"seconds\":%.6f,\"published\":%" PRIu64 ",\"deliveries\":%" PRIu64
         ",\"publishesPerSec\":%.1f,\"deliveriesPerSec\":%.1f,"
         "\"p50Us\":%.2f,\"p99Us\":%.2f,\"maxUs\":%.2f,"
         "\"maxStallUs\":%.2f,\"p50StallUs\":%.2f,\"missing\":%" PRIu64
         ",\"outOfOrder\":%" PRIu64 ",\"malformed\":%" PRIu64
         ",\"deadSubscribers\":%" PRIu64 ",\"undelivered\":%" PRIu64
         ",\"cpu\":%.1f}\n",
         opt.subscribers, opt.window, opt.size, seconds, g.published,
         g.deliveries, (double)g.published / seconds,
         (double)g.deliveries / seconds, hist_quantile_us(&latency, 0.5),
         hist_quantile_us(&latency, 0.99), hist_quantile_us(&latency, 1.0),
         stall_max, stall_p50,
         g.missing, g.out_of_order, g.bad_messages, g.dead_subs,
         g.undelivered, cpu / seconds * 100);
}

/*
 * A reconnect storm: `subscribers` subscribers and a publisher, every
 * subscriber with a hello; then all subscribers drop at once (their sockets
 * closed, no close frame: a network blip, a restarted proxy) and connect
 * again at once (at most `concurrency` connecting). A client is back once
 * it has its checked 101 and a hello published after it. Reports the time
 * from the drop to the last 101 and to the last client back, and each
 * handshake's time.
 */
static void run_storm(void) {
  open_all(opt.subscribers, ROLE_SUB, "/sub");
  if (g.failed_open > 0) die("%u subscriber(s) failed to open", g.failed_open);
  open_all(1, ROLE_PUB, "/pub");
  if (g.failed_open > 0) die("the publisher failed to open");
  g.publisher = g.conns[g.conn_count - 1];
  say_hello(0, opt.subscribers, 1, 0);
  mark("start");
  double cpu0 = cpu_seconds();
  uint32_t first = g.conn_count;
  g.storm_first = g.now = now_ns();
  g.storm_last = g.storm_back = g.storm_first;
  for (uint32_t i = 0; i < opt.subscribers; i++) conn_close_fd(g.conns[i]);
  uint32_t failed_before = g.failed_open;
  say_hello(first, 0, 0, g.launched + opt.subscribers);
  double cpu = cpu_seconds() - cpu0;
  mark("end");
  double seconds = (double)(g.storm_back - g.storm_first) / 1e9;
  printf("{\"mode\":\"storm\",\"subscribers\":%u,\"concurrency\":%u,"
         "\"back\":%" PRIu64 ",\"errors\":%u,\"allOpenMs\":%.3f,"
         "\"allBackMs\":%.3f,\"p50Us\":%.2f,\"p99Us\":%.2f,"
         "\"maxUs\":%.2f,\"cpu\":%.1f}\n",
         opt.subscribers, opt.concurrency, g.storm_ok,
         g.failed_open - failed_before,
         (double)(g.storm_last - g.storm_first) / 1e6, seconds * 1e3,
         hist_quantile_us(&latency, 0.5), hist_quantile_us(&latency, 0.99),
         hist_quantile_us(&latency, 1.0),
         seconds > 0 ? cpu / seconds * 100 : 0);
}

/* Waits until every subscriber from `from` to `to` has had the last hello. */
static void wait_for_last_hello(uint32_t from, uint32_t to) {
  uint64_t deadline = g.now + ms_ns(30000);
  for (;;) {
    uint32_t waiting = 0;
    for (uint32_t i = from; i < to; i++) {
      if (g.conns[i]->hello != g.hellos_sent) waiting++;
    }
    if (waiting == 0) return;
    if (g.now > deadline) {
      die("%u subscribers did not get the last hello in 30 s", waiting);
    }
    poll_once(50);
  }
}

/*
 * Recovery after a reconnect storm, in the live protocol (/live):
 * `subscribers` clients connect, subscribe to the topic and have a hello,
 * as has a plain subscriber, the witness (/sub); then every client drops at
 * once (its socket closed, no close frame), `settle` ms later `missed`
 * publications are made (sequence numbers 0 to missed - 1), and once the
 * witness has had them all (they are then in the topic's history) every
 * client connects again (at most `concurrency` connecting), says `connect`,
 * and once answered resubscribes from the last position it saw (the last
 * hello's). A client has recovered once it has had `subscribed` with
 * `recovered: true` at the position `missed` after its own, then each
 * missed publication, once, in order, at the offsets after its position.
 * Reports the time from the reconnect to the last 101 and to the last client
 * recovered, each client's time from connect() and from its `sub` to its
 * recovery, and what went wrong (a client not recovered in 60 s is
 * unfinished).
 */
static void run_recover(void) {
  if (opt.size < 48 || opt.size > MAX_KEPT_PAYLOAD) {
    die("--size must be 48 to %d", MAX_KEPT_PAYLOAD);
  }
  /* The witness's window is every missed publication. */
  opt.window = opt.missed;
  g.remaining = calloc(opt.window, sizeof *g.remaining);
  g.payload = malloc(opt.size);
  if (g.remaining == NULL || g.payload == NULL) die("out of memory");
  memset(g.payload, ' ', opt.size);
  open_all(opt.subscribers, ROLE_LIVE, "/live");
  open_all(1, ROLE_SUB, "/sub");
  open_all(1, ROLE_PUB, "/pub");
  if (g.failed_open > 0) die("%u connection(s) failed to open", g.failed_open);
  g.publisher = g.conns[g.conn_count - 1];
  say_hello(0, opt.subscribers + 1, 1, 0);
  wait_for_last_hello(0, opt.subscribers + 1);
  for (uint32_t i = 0; i < opt.subscribers; i++) conn_close_fd(g.conns[i]);
  uint64_t settled = g.now + ms_ns(opt.settle_ms);
  while (g.now < settled) poll_once(until_ms(settled));
  uint64_t published = g.now, deadline = g.now + ms_ns(30000);
  g.active_subs = 1;
  g.publishing = 1;
  publish_more();
  g.publishing = 0;
  while (g.oldest < g.next_seq) {
    if (g.now > deadline) die("the witness did not get the publications");
    poll_once(50);
  }
  double publish_ms = (double)(g.now - published) / 1e6;
  mark("start");
  double cpu0 = cpu_seconds();
  g.recover_first = g.conn_count;
  uint32_t failed_before = g.failed_open;
  uint32_t total = g.launched + opt.subscribers;
  g.storm_first = g.now = now_ns();
  g.storm_last = g.storm_back = g.storm_first;
  deadline = g.now + ms_ns(60000);
  for (;;) {
    launch(total, ROLE_LIVE, "/live", 1);
    uint32_t pending = total - g.launched;
    for (uint32_t i = g.recover_first; i < g.conn_count; i++) {
      struct conn *c = g.conns[i];
      if (c->live < LIVE_RECOVERED && c->state != ST_DONE) pending++;
    }
    if (pending == 0 || g.now > deadline) break;
    poll_once(50);
  }
  uint64_t t1 = g.now;
  double cpu = cpu_seconds() - cpu0;
  mark("end");
  uint64_t unfinished = 0;
  for (uint32_t i = g.recover_first; i < g.conn_count; i++) {
    struct conn *c = g.conns[i];
    if (c->live < LIVE_RECOVERED && c->state != ST_DONE) unfinished++;
  }
  /* What a client gets after its last missed publication is a duplicate. */
  uint64_t drained = g.now + ms_ns(200);
  while (g.now < drained) poll_once(until_ms(drained));
  double window = (double)(t1 - g.storm_first) / 1e9;
  printf("{\"mode\":\"recover\",\"subscribers\":%u,\"missed\":%u,"
         "\"concurrency\":%u,\"recovered\":%" PRIu64
         ",\"notRecovered\":%" PRIu64 ",\"failedOpen\":%u,"
         "\"liveErrors\":%" PRIu64 ",\"unfinished\":%" PRIu64
         ",\"missing\":%" PRIu64 ",\"duplicates\":%" PRIu64
         ",\"wrongData\":%" PRIu64 ",\"outOfOrder\":%" PRIu64
         ",\"malformed\":%" PRIu64 ",\"publishMs\":%.3f,\"allOpenMs\":%.3f,"
         "\"allRecoveredMs\":%.3f,\"p50Us\":%.2f,\"p99Us\":%.2f,"
         "\"recoverP50Us\":%.2f,\"recoverP99Us\":%.2f,"
         "\"subP50Us\":%.2f,\"subP99Us\":%.2f,\"subMaxUs\":%.2f,"
         "\"cpu\":%.1f}\n",
         opt.subscribers, opt.missed, opt.concurrency, g.recovered,
         g.not_recovered, g.failed_open - failed_before, g.live_errors,
         unfinished, g.missing, g.duplicates, g.wrong_data, g.out_of_order,
         g.bad_messages, publish_ms,
         (double)(g.storm_last - g.storm_first) / 1e6,
         (double)(g.storm_back - g.storm_first) / 1e6,
         hist_quantile_us(&latency, 0.5), hist_quantile_us(&latency, 0.99),
         hist_quantile_us(&recovery, 0.5), hist_quantile_us(&recovery, 0.99),
         hist_quantile_us(&resubscribe, 0.5),
         hist_quantile_us(&resubscribe, 0.99),
         hist_quantile_us(&resubscribe, 1.0),
         window > 0 ? cpu / window * 100 : 0);
}

/* ---- main ----------------------------------------------------------------- */

static uint32_t number(const char *flag, const char *value, uint32_t min) {
  char *end;
  errno = 0;
  unsigned long v = strtoul(value, &end, 10);
  if (errno != 0 || *end != '\0' || *value == '\0' || v < min ||
      v > 100000000ul) {
    die("%s: expected a whole number of at least %u, got %s", flag, min,
        value);
  }
  return (uint32_t)v;
}

int main(int argc, char **argv) {
  int size_given = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--binary") == 0) {
      opt.binary = 1;
      continue;
    }
    if (i + 1 >= argc) usage();
    const char *v = argv[++i];
    if (strcmp(a, "--mode") == 0) {
      if (strcmp(v, "echo") == 0) {
        opt.mode = MODE_ECHO;
      } else if (strcmp(v, "handshake") == 0) {
        opt.mode = MODE_HANDSHAKE;
      } else if (strcmp(v, "fanout") == 0) {
        opt.mode = MODE_FANOUT;
      } else if (strcmp(v, "storm") == 0) {
        opt.mode = MODE_STORM;
      } else if (strcmp(v, "recover") == 0) {
        opt.mode = MODE_RECOVER;
      } else {
        usage();
      }
    } else if (strcmp(a, "--port") == 0) {
      opt.port = (int)number(a, v, 1);
      if (opt.port > 65535) die("--port: out of range");
    } else if (strcmp(a, "--port2") == 0) {
      opt.port2 = (int)number(a, v, 1);
      if (opt.port2 > 65535) die("--port2: out of range");
    } else if (strcmp(a, "--path") == 0) {
      if (v[0] != '/' || strpbrk(v, " \r\n") != NULL) die("--path: bad path");
      opt.path = v;
    } else if (strcmp(a, "--connections") == 0) {
      opt.connections = number(a, v, 1);
    } else if (strcmp(a, "--inflight") == 0) {
      opt.inflight = number(a, v, 1);
    } else if (strcmp(a, "--size") == 0) {
      opt.size = number(a, v, 0);
      size_given = 1;
    } else if (strcmp(a, "--warmup") == 0) {
      opt.warmup_ms = number(a, v, 0);
    } else if (strcmp(a, "--duration") == 0) {
      opt.duration_ms = number(a, v, 1);
    } else if (strcmp(a, "--open") == 0) {
      opt.open = number(a, v, 0);
    } else if (strcmp(a, "--handshakes") == 0) {
      opt.handshakes = number(a, v, 1);
    } else if (strcmp(a, "--concurrency") == 0) {
      opt.concurrency = number(a, v, 1);
    } else if (strcmp(a, "--subscribers") == 0) {
      opt.subscribers = number(a, v, 1);
    } else if (strcmp(a, "--window") == 0) {
      opt.window = number(a, v, 1);
    } else if (strcmp(a, "--missed") == 0) {
      opt.missed = number(a, v, 1);
    } else if (strcmp(a, "--settle") == 0) {
      opt.settle_ms = number(a, v, 0);
    } else if (strcmp(a, "--drain") == 0) {
      opt.drain_ms = number(a, v, 0);
    } else if (strcmp(a, "--timeout") == 0) {
      opt.timeout_ms = number(a, v, 1);
    } else {
      usage();
    }
  }
  if (opt.port == 0) usage();
  if ((opt.mode == MODE_FANOUT || opt.mode == MODE_RECOVER) && !size_given) {
    opt.size = 64;
  }

  /* The RFC 6455 §1.3 example: a broken SHA-1 must not pass as a slow server. */
  char check[29];
  accept_for("dGhlIHNhbXBsZSBub25jZQ==", check);
  if (strcmp(check, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") != 0) {
    die("SHA-1 self-check failed");
  }

  signal(SIGPIPE, SIG_IGN);
  /* A descriptor per connection: take the hard limit. */
  struct rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
  rng_seed();
  uint64_t key = rng_next();
  memcpy(g.key, &key, 4);
  g.scratch = malloc(SCRATCH_SIZE);
  g.epfd = epoll_create1(EPOLL_CLOEXEC);
  if (g.scratch == NULL || g.epfd < 0) die("setup failed");
  g.now = now_ns();
  run_deadline = g.now + ms_ns(opt.timeout_ms);
  switch (opt.mode) {
  case MODE_ECHO:
    run_echo();
    break;
  case MODE_HANDSHAKE:
    run_handshake();
    break;
  case MODE_FANOUT:
    run_fanout();
    break;
  case MODE_STORM:
    run_storm();
    break;
  case MODE_RECOVER:
    run_recover();
    break;
  }
  fflush(stdout);
  return 0;
}
