/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Cgroups as the stats and resource calls see them: where each controller
 * is mounted (cgroup v1, v2, or the hybrid layout with v1 controllers beside
 * a cgroup2 mount at /sys/fs/cgroup/unified), which cgroup a process or a
 * cgroupsPath names in each hierarchy, reading a cgroup's figures with
 * bounded reads, and the file writes that apply resource limits.
 *
 * Reading is cheap and never blocks on anything but the kernel's cgroup
 * files, so it runs on the loop. Writing limits can block (lowering
 * memory.limit_in_bytes makes the kernel reclaim first): callers write in a
 * child process (cgroup_write_plan() is async-signal-safe once planned).
 *
 * The parsers take texts so the unit tests can feed them fixtures.
 */
#ifndef TINYCRI_POD_CGROUP_H
#define TINYCRI_POD_CGROUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "api.pb-c.h"

struct error;

/* The controllers the stats and the resource updates use. */
enum cgroup_controller {
    CGROUP_CPU,
    CGROUP_CPUACCT,
    CGROUP_CPUSET,
    CGROUP_MEMORY,
    CGROUP_PIDS,
    CGROUP_HUGETLB,
    CGROUP_N,
};

const char *cgroup_controller_name(enum cgroup_controller c);

/*
 * Where the hierarchies are. A controller is read from its v1 hierarchy
 * when it has one, else from cgroup2 when cgroup2 has it (v2_controllers).
 * CPU usage comes from cgroup2's cpu.stat when there is no v1 cpuacct: the
 * kernel keeps it in every cgroup2 group, controller enabled or not.
 */
struct cgroup_layout {
    char *v1[CGROUP_N];      /* mount point of the controller's v1 hierarchy; NULL: none */
    char *v1_root[CGROUP_N]; /* the mount's root inside that hierarchy ("/" usually) */
    char *v2;                /* cgroup2 mount point; NULL: none */
    char *v2_root;
    unsigned v2_controllers; /* bit (1 << controller) per controller cgroup2 has */
};

/*
 * Parse /proc/self/mountinfo text, and the text of the cgroup2 root's
 * cgroup.controllers (NULL when unreadable). Errors: INVALID_ARGUMENT when
 * no cgroup hierarchy is mounted at all.
 */
int cgroup_layout_parse(const char *mountinfo, const char *v2_controllers, struct cgroup_layout *l,
                        struct error **err);
void cgroup_layout_clear(struct cgroup_layout *l);

/* "v1", "v2" or "hybrid" (v1 controllers and a cgroup2 mount), for logs and verbose info. */
const char *cgroup_layout_kind(const struct cgroup_layout *l);

/*
 * The host's layout, discovered once by cgroup_init() (read from
 * /proc/self/mountinfo). NULL before, or when discovery failed (logged).
 */
void cgroup_init(void);
void cgroup_shutdown(void);
const struct cgroup_layout *cgroup_host_layout(void);

/* One cgroup: its path inside each hierarchy ("/tinycri/<id>"). */
struct cgroup_paths {
    char *v1[CGROUP_N]; /* NULL when the controller has no v1 hierarchy line */
    char *v2;           /* the "0::" line; NULL when none */
};

/*
 * Parse /proc/<pid>/cgroup text ("<n>:<controllers>:<path>" lines). Errors:
 * INVALID_ARGUMENT when no line is usable.
 */
int cgroup_paths_parse(const char *text, struct cgroup_paths *p, struct error **err);

/* The same path in every hierarchy: what a cgroupfs cgroupsPath means. */
void cgroup_paths_same(const char *path, struct cgroup_paths *p);
void cgroup_paths_clear(struct cgroup_paths *p);

/*
 * A systemd slice's path: "kubepods-burstable-pod1.slice" is
 * "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice";
 * "-.slice" is "/". Owned; NULL when the name is not a valid slice name.
 */
char *cgroup_systemd_slice_path(const char *slice);

/*
 * The cgroup path an OCI cgroupsPath names: as given for the cgroupfs
 * driver; for systemd, "slice:prefix:name" is
 * "<slice path>/<prefix>-<name>.scope". Owned; NULL when malformed.
 */
char *cgroup_path_from_oci(const char *cgroups_path, bool systemd);

/*
 * The directory of the cgroup for a controller (owned), or NULL when the
 * controller is nowhere or the path is outside the mount's root. With
 * CGROUP_N, the cgroup2 directory.
 */
char *cgroup_dir(const struct cgroup_layout *l, const struct cgroup_paths *p,
                 enum cgroup_controller c);

/* What cgroup_stats_read() found; a figure is valid when its CGROUP_HAVE_ bit is set. */
enum {
    CGROUP_HAVE_CPU = 1u << 0,      /* cpu_usage_ns, cpu_user_ns, cpu_system_ns */
    CGROUP_HAVE_THROTTLE = 1u << 1, /* cpu_periods, cpu_throttled_periods, cpu_throttled_ns */
    CGROUP_HAVE_MEMORY = 1u << 2,   /* mem_* and the page faults */
    CGROUP_HAVE_SWAP = 1u << 3,     /* swap_usage, swap_limit */
    CGROUP_HAVE_PIDS = 1u << 4,     /* pids_current, pids_max */
    /* The details asked for (cpu_user_ns, cpu_system_ns, the CFS throttling on v1,
     * mem_max_usage, mem_failcnt, mem_kernel, pids_max) were read. */
    CGROUP_HAVE_DETAIL = 1u << 5,
};

#define CGROUP_UNLIMITED UINT64_MAX

struct cgroup_stats {
    unsigned have;
    uint64_t cpu_usage_ns;
    uint64_t cpu_user_ns;
    uint64_t cpu_system_ns;
    uint64_t cpu_periods;
    uint64_t cpu_throttled_periods;
    uint64_t cpu_throttled_ns;
    uint64_t mem_usage;
    uint64_t mem_working_set; /* usage - inactive_file, at least 0 */
    uint64_t mem_rss;         /* v1 total_rss, v2 anon */
    uint64_t mem_cache;       /* v1 total_cache, v2 file */
    uint64_t mem_mapped_file;
    uint64_t mem_active_file;
    uint64_t mem_inactive_file;
    uint64_t mem_kernel;
    uint64_t mem_max_usage; /* v1 max_usage_in_bytes, v2 memory.peak; 0 when unknown */
    uint64_t mem_failcnt;   /* v1 only; v2: memory.events "max" */
    uint64_t mem_limit;     /* CGROUP_UNLIMITED when none */
    uint64_t pgfault;
    uint64_t pgmajfault;
    uint64_t swap_usage;
    uint64_t swap_limit; /* CGROUP_UNLIMITED when none */
    uint64_t pids_current;
    uint64_t pids_max; /* CGROUP_UNLIMITED when none */
};

/*
 * Read a cgroup's figures. Each file is read with one bounded read (at most
 * CGROUP_FILE_MAX bytes; a longer file is an error). Without detail only what
 * the stats RPCs carry is read (on v1: cpuacct.usage, memory.usage_in_bytes,
 * memory.stat, memory.limit_in_bytes, memsw usage and limit, pids.current);
 * detail adds what the metrics have besides. Figures whose files are missing
 * are left out (their bit stays clear); errors: NOT_FOUND when the cgroup's
 * memory and CPU files are all missing (the cgroup is gone).
 */
#define CGROUP_FILE_MAX 8192
int cgroup_stats_read(const struct cgroup_layout *l, const struct cgroup_paths *p, bool detail,
                      struct cgroup_stats *s, struct error **err);

/* Add b's figures into a (a pod's total from its containers'). */
void cgroup_stats_add(struct cgroup_stats *a, const struct cgroup_stats *b);

/*
 * The value of "key <number>" in a cgroup keyed file (memory.stat,
 * cpu.stat, memory.events); false when absent or not a number.
 */
bool cgroup_parse_keyed(const char *text, const char *key, uint64_t *value);

/* A single-number file ("max" and v1's 2^63-ish "no limit" give CGROUP_UNLIMITED). */
bool cgroup_parse_number(const char *text, uint64_t *value);

/*
 * Writes that apply limits to one cgroup: file paths and values, planned on
 * the loop and carried out in a child (cgroup_write_plan()).
 */
struct cgroup_write {
    char *path;
    char *value;
    /* Tried again after the others when it fails: limits whose order matters
     * (memory vs memory+swap, CFS quota vs period) are all retried once. */
    bool retry;
};

struct cgroup_plan {
    struct cgroup_write *writes;
    size_t n;
};

/*
 * Plan the writes that give the cgroup p the limits r (CRI units: CPU
 * shares, CFS quota and period in us, cpusets, memory and memory+swap bytes,
 * hugepage limits, unified keys), on whichever hierarchy holds each
 * controller. Unset fields (0, "") are not written. Errors:
 * INVALID_ARGUMENT (a bad value: see cgroup_resources_check()),
 * FAILED_PRECONDITION (a controller the limit needs is nowhere).
 */
int cgroup_plan_resources(const struct cgroup_layout *l, const struct cgroup_paths *p,
                          const Runtime__V1__LinuxContainerResources *r, struct cgroup_plan *plan,
                          struct error **err);
void cgroup_plan_clear(struct cgroup_plan *plan);

/*
 * Carry the plan out (in a child: blocking writes). Returns 0, or -1 with a
 * message "<path>: <strerror>" for the first write that failed even on
 * retry in msg (size msg_len).
 */
int cgroup_write_plan(const struct cgroup_plan *plan, char *msg, size_t msg_len);

/*
 * Check CRI resource figures as the runtimes and the kernel would take
 * them: shares 0 or 2..262144, CFS period 0 or 1000..1000000 us, quota 0, -1
 * or at least 1000 us, memory >= 0, memory+swap -1, 0 or at least the
 * memory limit, cpusets "0-3,5", hugepage sizes "2MB", unified keys
 * "<controller>.<file>". Errors: INVALID_ARGUMENT naming the CRI field.
 */
int cgroup_resources_check(const Runtime__V1__LinuxContainerResources *r, struct error **err);

/*
 * A hugepage size in bytes from "2MB", "1GB", "64KB" (as kubelet and the OCI
 * spec name them); 0 when malformed.
 */
uint64_t cgroup_hugepage_size(const char *name);

#endif
