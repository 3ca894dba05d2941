/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The loop-running helpers of helpers.h.
 */
#include "autoconf.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <event2/event.h>

#include "core/loop.h"
#include "core/util.h"
#include "helpers.h"

#define POLL_MS 10

static void on_safety(void *arg)
{
    *(bool *)arg = true;
    loop_exit();
}

void run_loop(int64_t safety_ms)
{
    bool fired = false;
    struct loop_timer *t = loop_timer_new(on_safety, &fired);
    loop_timer_arm(t, safety_ms);
    assert_int_equal(loop_run(), 0);
    loop_timer_free(t);
    assert_false(fired);
}

static void on_stop(void *arg)
{
    loop_exit();
}

void run_loop_for(int64_t ms)
{
    struct loop_timer *t = loop_timer_new(on_stop, NULL);
    loop_timer_arm(t, ms);
    assert_int_equal(loop_run(), 0);
    loop_timer_free(t);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    *(bool *)arg = true;
}

bool run_until(bool (*pred)(void *arg), void *arg, int64_t safety_ms)
{
    bool timed_out = false;
    struct event *t = evtimer_new(loop_base(), on_deadline, &timed_out);
    assert_non_null(t);
    struct timeval tv = {(time_t)(safety_ms / 1000), (suseconds_t)(safety_ms % 1000) * 1000};
    evtimer_add(t, &tv);
    while (!pred(arg) && !timed_out)
        event_base_loop(loop_base(), EVLOOP_ONCE);
    event_free(t);
    return pred(arg);
}

void run_until_no_children(int64_t safety_ms)
{
    int64_t start = now_monotonic_ns();
    while (child_count() > 0 && elapsed_ms(start) < safety_ms)
        run_loop_for(POLL_MS);
    assert_int_equal(child_count(), 0);
    run_loop_for(POLL_MS); /* the deferred frees */
}

int64_t elapsed_ms(int64_t start_ns)
{
    return (now_monotonic_ns() - start_ns) / 1000000;
}
