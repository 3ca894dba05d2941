/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libcurl's multi-socket API on the daemon's loop: one multi handle, a
 * libevent event for each socket curl asks to watch, one loop timer for
 * curl's timeouts. Nothing blocks: DNS runs in libcurl's resolver thread.
 *
 * The multi exists only while it is needed: curl_glue_open() loads libcurl
 * (xferlib) and makes it, curl_glue_close() cleans it up and releases
 * libcurl. libcurl's callbacks may only record what happened: after every
 * call into libcurl that may run them (a socket event, a timeout), the
 * owner's after(arg) runs with libcurl off the stack, which is where it
 * collects finished transfers and removes their handles.
 */
#ifndef TINYCRI_IMAGE_CURL_GLUE_H
#define TINYCRI_IMAGE_CURL_GLUE_H

#include <stdbool.h>
#include <sys/queue.h>

#include <curl/curl.h>

struct error;
struct loop_timer;
struct curl_sock;

struct curl_glue {
    CURLM *multi; /* NULL while closed; holds an xferlib reference while open */
    struct loop_timer *timer;
    TAILQ_HEAD(, curl_sock) socks;
    int depth; /* > 0 while inside libcurl, whose callbacks may be on the stack */
    void (*after)(void *arg);
    void *arg;
};

/* Ready to open; after(arg) runs after each action (see above). Needs the loop. */
void curl_glue_init(struct curl_glue *g, void (*after)(void *arg), void *arg);

/*
 * Make the multi if it is not there (libcurl loaded, its new fds made
 * close-on-exec). Errors: UNAVAILABLE/INTERNAL when libcurl cannot be loaded.
 */
int curl_glue_open(struct curl_glue *g, struct error **err);

/* Clean the multi up and release libcurl; a no-op when closed. Never inside libcurl. */
void curl_glue_close(struct curl_glue *g);

/* Close and free the timer. */
void curl_glue_clear(struct curl_glue *g);

#endif
