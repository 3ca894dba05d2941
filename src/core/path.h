/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Lexical checks of paths that come from outside (CRI requests, tar entries,
 * what a child reports): no file system access, no symlink resolution.
 */
#ifndef TINYCRI_CORE_PATH_H
#define TINYCRI_CORE_PATH_H

#include <stdbool.h>
#include <stddef.h>

/* Has p a ".." component ("..", "../a", "a/..", "a/../b"; not "a..b")? */
bool path_has_dotdot(const char *p);

/* Has p a "." or ".." component ("./a", "a/.", "a/../b"; not ".a" or "a..b")? */
bool path_has_dot_component(const char *p);

/* Has p a control character (0x01-0x1f or 0x7f: a newline in a file name)? */
bool path_has_control(const char *p);

/* The length of p's longest component (to compare with NAME_MAX). */
size_t path_longest_component(const char *p);

/*
 * Can p be used below a directory without escaping it: not empty, not
 * absolute, no ".." component. "./a//b/" is fine (tar entries look so).
 */
bool path_is_safe_relpath(const char *p);

/*
 * A safe relative path already in normal form: its components are neither
 * empty nor "." (no "//", no "./", no trailing "/"). What the daemon writes
 * itself, so a reader can compare such paths as strings.
 */
bool path_is_clean_relpath(const char *p);

/*
 * One directory entry name: 1 to max bytes, not "." or "..", no '/', no
 * control character.
 */
bool path_is_name(const char *s, size_t max);

#endif
