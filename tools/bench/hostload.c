/* hostload: a load generator for hsmsvc's payShield-style host-command port.
 *
 * Why C: the host-command door has no h2load. A Python client costs 80-110 us of CPU per call
 * and takes half of a 2-core machine (docs/platform-notes.md), so it would measure itself; this
 * costs a few us per call, as h2load does for the gRPC door. tools/bench/hostcmd.py builds it
 * (gcc -O2, libc only) and runs it beside h2load against the same server.
 *
 * N TCP connections, each keeping K requests in flight (--pipeline; the server answers a
 * connection's requests in order). Every request is the same prepared frame: 2-byte big-endian
 * length (counting header, command and fields), header, command, fields. Replies are read by
 * their 2-byte length; each is compared with --expect (the whole reply frame), or without it its
 * response code and error code (the 4 bytes after the header) with the request's code advanced
 * by one and "00" (CA -> CB00). Unequal replies are counted as mismatches, never hidden.
 *
 *   hostload --port P --request HEX [--expect HEX] [--connections 64] [--pipeline 1]
 *            [--header-length 4] [--warm-up 1] [--duration 5]
 *
 * Prints one JSON line: requests (answered within the measured period), mismatches, closed
 * (connections the server closed), seconds, per_second, p50/p95/p99/max latency in ms.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    int fd;
    unsigned char *out; size_t out_len;      /* bytes not yet written */
    unsigned char in[65536 + 2]; size_t in_len;
    double *sent; int head, count;           /* send times of requests in flight, oldest at head */
} conn;

static unsigned char *req, *expect, code[4];
static size_t req_len, expect_len;
static int pipeline = 1, header_length = 4;
static double *lat; static size_t lat_n, lat_cap;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static void die(const char *what) { perror(what); exit(2); }

static unsigned char *hex(const char *s, size_t *n) {
    size_t len = strlen(s);
    if (len % 2) { fprintf(stderr, "hostload: odd hex length\n"); exit(2); }
    unsigned char *b = malloc(len / 2 + 1);
    for (size_t i = 0; i < len / 2; i++)
        if (sscanf(s + 2 * i, "%2hhx", &b[i]) != 1) { fprintf(stderr, "hostload: bad hex\n"); exit(2); }
    *n = len / 2;
    return b;
}

static void queue(conn *c, double t) {       /* one more request: its bytes and its send time */
    memcpy(c->out + c->out_len, req, req_len);
    c->out_len += req_len;
    c->sent[(c->head + c->count++) % pipeline] = t;
}

static int flush(conn *c) {                  /* 0, or -1 when the connection is gone */
    while (c->out_len) {
        ssize_t w = send(c->fd, c->out, c->out_len, MSG_NOSIGNAL);
        if (w < 0) return errno == EAGAIN ? 0 : -1;
        memmove(c->out, c->out + w, c->out_len - w);
        c->out_len -= w;
    }
    return 0;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pct(double q) {
    if (!lat_n) return 0;
    long i = (long)(q * lat_n + 0.5) - 1;
    if (i < 0) i = 0;
    if ((size_t)i >= lat_n) i = lat_n - 1;
    return lat[i] * 1e3;
}

int main(int argc, char **argv) {
    int port = 0, nconn = 64;
    double warm = 1, duration = 5;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--port")) port = atoi(v);
        else if (!strcmp(k, "--connections")) nconn = atoi(v);
        else if (!strcmp(k, "--pipeline")) pipeline = atoi(v);
        else if (!strcmp(k, "--header-length")) header_length = atoi(v);
        else if (!strcmp(k, "--warm-up")) warm = atof(v);
        else if (!strcmp(k, "--duration")) duration = atof(v);
        else if (!strcmp(k, "--request")) req = hex(v, &req_len);
        else if (!strcmp(k, "--expect")) expect = hex(v, &expect_len);
        else { fprintf(stderr, "hostload: unknown option %s\n", k); return 2; }
    }
    if (!port || !req || nconn < 1 || pipeline < 1 || duration <= 0
        || req_len < (size_t)header_length + 4 || req_len != 2u + (req[0] << 8 | req[1])) {
        fprintf(stderr, "hostload: --port and --request (a whole frame) needed; see the header comment\n");
        return 2;
    }
    /* Without --expect: the request's command with its second character advanced, and "00". */
    memcpy(code, req + 2 + header_length, 2);
    code[1]++;
    code[2] = code[3] = '0';

    int ep = epoll_create1(0);
    conn *cs = calloc(nconn, sizeof *cs);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    for (int i = 0; i < nconn; i++) {
        conn *c = &cs[i];
        c->fd = socket(AF_INET, SOCK_STREAM, 0);
        if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&addr, sizeof addr) < 0) die("hostload: connect");
        int one = 1;
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        c->out = malloc(req_len * pipeline);
        c->sent = malloc(sizeof(double) * pipeline);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) die("hostload: epoll_ctl");
    }
    double start = now(), begin = start + warm, end = begin + duration, t;
    for (int i = 0; i < nconn; i++) {        /* blocking sends: K frames fit any socket buffer */
        for (int k = 0; k < pipeline; k++) queue(&cs[i], start);
        if (flush(&cs[i]) < 0) die("hostload: send");
        fcntl(cs[i].fd, F_SETFL, fcntl(cs[i].fd, F_GETFL) | O_NONBLOCK);
    }
    long requests = 0, mismatches = 0, closed = 0;
    struct epoll_event evs[256];
    while ((t = now()) < end && closed < nconn) {
        int n = epoll_wait(ep, evs, 256, 10);
        if (n < 0 && errno != EINTR) die("hostload: epoll_wait");
        t = now();
        for (int e = 0; e < n; e++) {
            conn *c = evs[e].data.ptr;
            if (c->fd < 0) continue;
            if (evs[e].events & EPOLLOUT && flush(c) == 0 && !c->out_len) {
                struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
                epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
            }
            if (!(evs[e].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) continue;
            ssize_t r = recv(c->fd, c->in + c->in_len, sizeof c->in - c->in_len, 0);
            if (r == 0 || (r < 0 && errno != EAGAIN)) {
                close(c->fd);
                c->fd = -1;
                closed++;
                continue;
            }
            if (r < 0) continue;
            c->in_len += r;
            size_t off = 0;
            int answered = 0;
            while (c->in_len - off >= 2) {       /* every whole reply in the buffer */
                size_t len = 2 + (c->in[off] << 8 | c->in[off + 1]);
                if (c->in_len - off < len) break;
                const unsigned char *f = c->in + off;
                int bad = expect ? len != expect_len || memcmp(f, expect, len)
                                 : len < 2u + header_length + 4 || memcmp(f + 2 + header_length, code, 4);
                if (c->count) {
                    double sent = c->sent[c->head];
                    c->head = (c->head + 1) % pipeline;
                    c->count--;
                    if (t >= begin) {
                        requests++;
                        mismatches += bad;
                        if (lat_n == lat_cap) {
                            lat_cap = lat_cap ? 2 * lat_cap : 65536;
                            if (!(lat = realloc(lat, lat_cap * sizeof *lat))) die("hostload: realloc");
                        }
                        lat[lat_n++] = t - sent;
                    }
                } else {
                    mismatches++;                /* a reply to no request: count it, never hide it */
                }
                off += len;
                answered++;
            }
            memmove(c->in, c->in + off, c->in_len - off);
            c->in_len -= off;
            for (int k = 0; k < answered; k++) queue(c, t);
            if (answered && flush(c) < 0) {
                close(c->fd);
                c->fd = -1;
                closed++;
            } else if (c->out_len) {
                struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
                epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
            }
        }
    }
    double seconds = (t < end ? t : end) - begin;
    if (seconds < 0) seconds = 0;
    qsort(lat, lat_n, sizeof *lat, cmp);
    printf("{\"requests\": %ld, \"mismatches\": %ld, \"closed\": %ld, \"connections\": %d, \"pipeline\": %d, "
           "\"seconds\": %.3f, \"per_second\": %.1f, \"p50_ms\": %.3f, \"p95_ms\": %.3f, \"p99_ms\": %.3f, "
           "\"max_ms\": %.3f}\n",
           requests, mismatches, closed, nconn, pipeline, seconds, seconds > 0 ? requests / seconds : 0.0,
           pct(0.50), pct(0.95), pct(0.99), lat_n ? lat[lat_n - 1] * 1e3 : 0.0);
    return closed || mismatches ? 1 : 0;
}
