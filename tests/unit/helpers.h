/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the unit tests that drive the real loop share: running it until
 * something calls loop_exit(), for a while, until a condition holds, or until
 * every child process is reaped, each with a safety deadline so that a hang
 * fails the test instead of blocking it. cmocka's assertions report failures.
 */
#ifndef TINYCRI_TESTS_UNIT_HELPERS_H
#define TINYCRI_TESTS_UNIT_HELPERS_H

#include <stdbool.h>
#include <stdint.h>

/* Run until something calls loop_exit(); fail when safety_ms passes first. */
void run_loop(int64_t safety_ms);

/* Run for ms milliseconds (callbacks may call loop_exit() earlier). */
void run_loop_for(int64_t ms);

/*
 * Run one event at a time until pred(arg) holds or safety_ms passes; returns
 * pred(arg). For tests whose callbacks do not call loop_exit() (it would end a
 * later run_loop() early): pred is checked after every event.
 */
bool run_until(bool (*pred)(void *arg), void *arg, int64_t safety_ms);

/*
 * Run until child_count() is 0, then one more pass for the deferred frees;
 * fail when safety_ms passes first.
 */
void run_until_no_children(int64_t safety_ms);

/* Milliseconds since start_ns (now_monotonic_ns()). */
int64_t elapsed_ms(int64_t start_ns);

#endif
