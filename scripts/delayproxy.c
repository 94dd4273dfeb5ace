/*
 * delayproxy: a TCP relay on 127.0.0.1 that delivers every byte a fixed time after it arrived,
 * in each direction: a userspace stand-in for `tc qdisc ... netem delay`, which this kernel lacks
 * (CONFIG_NET_SCH_NETEM is not set). Used by scripts/bench_stream.py and scripts/bench_dims.py
 * (--db-delay-ms); compiled by scripts/netdelay.py. Not part of the product.
 *
 *     delayproxy LISTEN_PORT TARGET_PORT DELAY_US
 *
 * Model: a link with a one-way propagation delay of DELAY_US and no bandwidth limit. Each
 * direction of each connection has a reader thread (recv, stamp arrival + delay, enqueue) and a
 * writer thread (sleep until the stamp with clock_nanosleep(TIMER_ABSTIME), send), so a stream of
 * data is pipelined (COPY is not slowed to one chunk per delay) while a request/response exchange
 * pays 2 x DELAY_US per round trip, plus the relay's own cost (thread wake-ups, two extra socket
 * hops), which netdelay.py measures and reports. Runs until killed.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CHUNK 65536

struct item {
    struct timespec due;
    ssize_t len; /* 0: end of stream */
    struct item *next;
    char data[];
};

struct pipe_dir {
    int from, to;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct item *head, *tail;
    struct conn *conn;
};

struct conn {
    struct pipe_dir dir[2];
    pthread_mutex_t mu;
    int finished; /* threads done (4); the last one closes both sockets and frees */
};

static long delay_ns;

static void add_ns(struct timespec *t, long ns) {
    t->tv_nsec += ns;
    while (t->tv_nsec >= 1000000000L) {
        t->tv_nsec -= 1000000000L;
        t->tv_sec += 1;
    }
}

static void push(struct pipe_dir *d, struct item *it) {
    pthread_mutex_lock(&d->mu);
    it->next = NULL;
    if (d->tail) d->tail->next = it; else d->head = it;
    d->tail = it;
    pthread_cond_signal(&d->cv);
    pthread_mutex_unlock(&d->mu);
}

static void release(struct conn *c) {
    pthread_mutex_lock(&c->mu);
    int last = ++c->finished == 4;
    pthread_mutex_unlock(&c->mu);
    if (last) {
        close(c->dir[0].from);
        close(c->dir[0].to);
        free(c);
    }
}

static void *reader(void *arg) {
    struct pipe_dir *d = arg;
    for (;;) {
        struct item *it = malloc(sizeof(struct item) + CHUNK);
        if (!it) abort();
        ssize_t n = recv(d->from, it->data, CHUNK, 0);
        if (n < 0 && errno == EINTR) { free(it); continue; }
        clock_gettime(CLOCK_MONOTONIC, &it->due);
        add_ns(&it->due, delay_ns);
        it->len = n > 0 ? n : 0;
        push(d, it);
        if (n <= 0) {
            release(d->conn);
            return NULL;
        }
    }
}

static void *writer(void *arg) {
    struct pipe_dir *d = arg;
    int ok = 1;
    for (;;) {
        pthread_mutex_lock(&d->mu);
        while (!d->head) pthread_cond_wait(&d->cv, &d->mu);
        struct item *it = d->head;
        d->head = it->next;
        if (!d->head) d->tail = NULL;
        pthread_mutex_unlock(&d->mu);
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &it->due, NULL) == EINTR) {}
        ssize_t len = it->len, off = 0;
        while (ok && off < len) {
            ssize_t n = send(d->to, it->data + off, len - off, MSG_NOSIGNAL);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) { ok = 0; break; }
            off += n;
        }
        free(it);
        if (len == 0) break;
    }
    shutdown(d->to, SHUT_WR);
    shutdown(d->from, SHUT_RD); /* a dead peer also ends the other side's reader */
    release(d->conn);
    return NULL;
}

static void spawn(void *(*fn)(void *), void *arg) {
    pthread_t t;
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&a, 256 * 1024);
    if (pthread_create(&t, &a, fn, arg) != 0) abort();
    pthread_attr_destroy(&a);
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s LISTEN_PORT TARGET_PORT DELAY_US\n", argv[0]);
        return 2;
    }
    int listen_port = atoi(argv[1]), target_port = atoi(argv[2]);
    delay_ns = atol(argv[3]) * 1000L;
    signal(SIGPIPE, SIG_IGN);
    int ls = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in la = {.sin_family = AF_INET, .sin_port = htons(listen_port)};
    la.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(ls, (struct sockaddr *)&la, sizeof la) || listen(ls, 64)) {
        perror("bind/listen");
        return 1;
    }
    printf("ready\n");
    fflush(stdout);
    for (;;) {
        int cs = accept(ls, NULL, NULL);
        if (cs < 0) continue;
        int ts = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in ta = {.sin_family = AF_INET, .sin_port = htons(target_port)};
        ta.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (connect(ts, (struct sockaddr *)&ta, sizeof ta)) {
            close(cs);
            close(ts);
            continue;
        }
        setsockopt(cs, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        setsockopt(ts, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct conn *c = calloc(1, sizeof *c);
        pthread_mutex_init(&c->mu, NULL);
        int ends[2][2] = {{cs, ts}, {ts, cs}};
        for (int i = 0; i < 2; i++) {
            struct pipe_dir *d = &c->dir[i];
            d->from = ends[i][0];
            d->to = ends[i][1];
            d->conn = c;
            pthread_mutex_init(&d->mu, NULL);
            pthread_cond_init(&d->cv, NULL);
        }
        for (int i = 0; i < 2; i++) {
            spawn(reader, &c->dir[i]);
            spawn(writer, &c->dir[i]);
        }
    }
}
