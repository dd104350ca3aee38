/* LD_PRELOAD shim for wrk in the TLS scenarios: counts the client's TLS handshakes
 * and how many resumed a session, and decides whether a new connection resumes:
 *
 *   LOADTEST_TLS_RESUME=0  every handshake is a full one: the session an SSL object
 *                          still holds from its last connection is dropped before the
 *                          handshake starts (SSL_set_session(ssl, NULL) while
 *                          SSL_in_before).
 *   LOADTEST_TLS_RESUME=1  every new connection offers the most recent resumable
 *                          session of the process (its TLS 1.3 ticket), kept when a
 *                          connection shuts down.
 *
 * Why: wrk (and h2load 1.52) keep their SSL object across reconnects, with its
 * session, and drop the session after a shutdown that was not clean; neither has a
 * switch for resumption, and from about half to nearly all of their new connections
 * resumed in tests, with the timing and the server. The shim changes nothing else
 * the client does.
 *
 * At exit it prints one line to stderr:
 *   LOADTEST_TLS handshakes=N resumed=M
 * Built by loadtest/lib/tls.py with `gcc -shared -fPIC`; the OpenSSL symbols resolve
 * against the libssl the client already loads (no OpenSSL headers needed). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct ssl_st SSL;
typedef struct ssl_session_st SSL_SESSION;
int SSL_in_before(const SSL *s);
int SSL_set_session(SSL *s, SSL_SESSION *session);
SSL_SESSION *SSL_get_session(const SSL *s);
SSL_SESSION *SSL_get1_session(SSL *s);
int SSL_SESSION_is_resumable(const SSL_SESSION *s);
void SSL_SESSION_free(SSL_SESSION *s);
int SSL_session_reused(const SSL *s);

static unsigned long handshakes, resumed;
static int mode = -1; /* 0: full handshakes only, 1: resume */
static SSL_SESSION *last; /* mode 1: the most recent resumable session */
static pthread_mutex_t last_mu = PTHREAD_MUTEX_INITIALIZER;
/* SSL_connect calls SSL_do_handshake, which this shim may intercept too: the inner
 * call is neither counted nor touched. */
static __thread int in_connect;

static int resume_mode(void) {
    if (mode < 0) {
        const char *v = getenv("LOADTEST_TLS_RESUME");
        mode = !(v && v[0] == '0');
    }
    return mode;
}

static void before(SSL *s) {
    if (!SSL_in_before(s))
        return;
    if (!resume_mode()) {
        SSL_set_session(s, NULL);
        return;
    }
    SSL_SESSION *cur = SSL_get_session(s);
    if (cur && SSL_SESSION_is_resumable(cur))
        return;
    pthread_mutex_lock(&last_mu);
    if (last)
        SSL_set_session(s, last); /* takes its own reference */
    pthread_mutex_unlock(&last_mu);
}

static int after(SSL *s, int rv) {
    if (rv == 1) {
        __atomic_fetch_add(&handshakes, 1, __ATOMIC_RELAXED);
        if (SSL_session_reused(s))
            __atomic_fetch_add(&resumed, 1, __ATOMIC_RELAXED);
    }
    return rv;
}

int SSL_do_handshake(SSL *s) {
    static int (*real)(SSL *);
    if (!real)
        real = (int (*)(SSL *))dlsym(RTLD_NEXT, "SSL_do_handshake");
    if (in_connect)
        return real(s);
    before(s);
    return after(s, real(s));
}

int SSL_connect(SSL *s) {
    static int (*real)(SSL *);
    if (!real)
        real = (int (*)(SSL *))dlsym(RTLD_NEXT, "SSL_connect");
    before(s);
    in_connect = 1;
    int rv = real(s);
    in_connect = 0;
    return after(s, rv);
}

/* A connection ends: its session now carries the ticket the server sent after the
 * handshake; keep it for the next connection (mode 1). */
int SSL_shutdown(SSL *s) {
    static int (*real)(SSL *);
    if (!real)
        real = (int (*)(SSL *))dlsym(RTLD_NEXT, "SSL_shutdown");
    if (resume_mode()) {
        SSL_SESSION *sess = SSL_get1_session(s);
        if (sess && SSL_SESSION_is_resumable(sess)) {
            pthread_mutex_lock(&last_mu);
            SSL_SESSION *old = last;
            last = sess;
            pthread_mutex_unlock(&last_mu);
            sess = old;
        }
        if (sess)
            SSL_SESSION_free(sess);
    }
    return real(s);
}

__attribute__((destructor)) static void report(void) {
    fprintf(stderr, "LOADTEST_TLS handshakes=%lu resumed=%lu\n",
            __atomic_load_n(&handshakes, __ATOMIC_RELAXED),
            __atomic_load_n(&resumed, __ATOMIC_RELAXED));
}
