/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for the OCI config.json builder and the RuntimeDefault seccomp
 * profile. Four scenarios are compared with golden files in
 * tests/unit/data/oci_spec/ (serialized with sorted keys and a 2-space
 * indent, the temporary directory written as "@TMP@"); run with
 * UPDATE_GOLDEN=1 to rewrite them, then review the diff. Targeted tests cover
 * argument merging, user resolution (including symlinks that try to leave
 * the rootfs), mounts, capabilities, namespaces and seccomp choices.
 */
#include "autoconf.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/error.h"
#include "core/util.h"
#include "pod/oci_spec.h"
#include "pod/sandbox.h"
#include "pod/seccomp_default.h"

#define S(x) ((char *)(x))
#define CAPBIT(n) ((uint64_t)1 << (n))

static char tmp[64];
static bool have_dev; /* device nodes could be made (root) */

static char *tpath(const char *rel)
{
    return xasprintf("%s/%s", tmp, rel);
}

/* tpath() into a buffer the caller need not free (valid until the next call). */
static const char *tpath_at(const char *rel)
{
    static char buf[512];
    snprintf(buf, sizeof(buf), "%s/%s", tmp, rel);
    return buf;
}

static void write_at(const char *rel, const char *text)
{
    _cleanup_free_ char *p = tpath(rel);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void mkdir_at(const char *rel)
{
    _cleanup_free_ char *p = tpath(rel);
    struct error *err = NULL;
    assert_int_equal(mkdir_p(p, 0755, &err), 0);
}

static void symlink_at(const char *target, const char *rel)
{
    _cleanup_free_ char *p = tpath(rel);
    assert_int_equal(symlink(target, p), 0);
}

static bool mknod_at(const char *rel, mode_t type, int maj, int min, mode_t perm)
{
    _cleanup_free_ char *p = tpath(rel);
    if (mknod(p, type | perm, makedev(maj, min)) < 0)
        return false;
    return chmod(p, perm) == 0;
}

static const char passwd[] = "root:x:0:0:root:/root:/bin/sh\n"
                             "daemon:x:1:1:daemon:/usr/sbin:/bin/false\n"
                             "# a comment\n"
                             "broken line\n"
                             "app:x:1000:1001:app user:/home/app:/bin/sh\n"
                             "nobody:x:65534:65534:nobody:/home:/bin/false\n";

static const char group[] = "root:x:0:\n"
                            "wheel:x:10:root\n"
                            "appgrp:x:1001:\n"
                            "app:x:1000:app\n"
                            "video:x:44:other,app\n"
                            "audio:x:29:other\n"
                            "nogroup:x:65534:\n";

static int setup(void **state)
{
    snprintf(tmp, sizeof(tmp), "/tmp/tc-oci-XXXXXX");
    assert_non_null(mkdtemp(tmp));
    mkdir_at("rootfs/etc");
    write_at("rootfs/etc/passwd", passwd);
    write_at("rootfs/etc/group", group);
    mkdir_at("sandbox/shm");
    write_at("sandbox/hostname", "web-0\n");
    write_at("sandbox/hosts", "127.0.0.1 localhost\n");
    write_at("sandbox/resolv.conf", "nameserver 10.96.0.10\n");
    mkdir_at("host/data");
    mkdir_at("host/cache");
    mkdir_at("host/shared");
    write_at("host/hosts", "10.0.0.1 db\n");
    symlink_at("cache", "host/link");
    mkdir_at("vol");
    mkdir_at("seccomp/dir");
    write_at("seccomp/profile.json",
             "{\"defaultAction\":\"SCMP_ACT_ERRNO\",\"architectures\":[\"SCMP_ARCH_X86_64\"],"
             "\"archMap\":[],\"syscalls\":[{\"names\":[\"read\",\"write\"],"
             "\"action\":\"SCMP_ACT_ALLOW\",\"comment\":\"x\"},"
             "{\"name\":\"exit\",\"action\":\"SCMP_ACT_ALLOW\"}]}");
    write_at("seccomp/bad.json", "{\"defaultAction\": ");
    write_at("seccomp/noaction.json", "{\"syscalls\": []}");
    write_at("outside.json", "{\"defaultAction\":\"SCMP_ACT_ALLOW\"}");
    symlink_at("../outside.json", "seccomp/escape.json");

    /* The host's mount table as the propagation checks see it. */
    _cleanup_free_ char *mi =
        xasprintf("21 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw\n"
                  "30 21 8:1 /s %s/host/shared rw shared:5 - ext4 /dev/sda1 rw\n"
                  "31 21 8:1 /c %s/host/cache rw master:7 - ext4 /dev/sda1 rw\n"
                  "32 21 8:1 /w %s/host/with\\040space rw shared:9 master:2 - ext4 /dev/sda1 rw\n",
                  tmp, tmp, tmp);
    write_at("mountinfo", mi);
    mkdir_at("host/with space/sub");

    mkdir_at("dev/snd");
    mkdir_at("dev/pts");
    write_at("dev/README", "not a device");
    symlink_at("/proc/self/fd/1", "dev/stdout");
    have_dev = mknod_at("dev/null", S_IFCHR, 1, 3, 0666) &&
               mknod_at("dev/sda", S_IFBLK, 8, 0, 0660) &&
               mknod_at("dev/snd/controlC0", S_IFCHR, 116, 0, 0660) &&
               mknod_at("dev/console", S_IFCHR, 5, 1, 0600) &&
               mknod_at("dev/pts/0", S_IFCHR, 136, 0, 0620);
    return 0;
}

static int teardown(void **state)
{
    char *cmd = xasprintf("rm -rf %s", tmp);
    assert_int_equal(system(cmd), 0);
    free(cmd);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* A baseline request, mutated by each test.                                */

struct fx {
    Runtime__V1__ContainerConfig ctr;
    Runtime__V1__ContainerMetadata cmeta;
    Runtime__V1__ImageSpec image;
    Runtime__V1__LinuxContainerConfig lc;
    Runtime__V1__LinuxContainerSecurityContext sc;
    Runtime__V1__NamespaceOption nso;
    Runtime__V1__LinuxContainerResources res;
    Runtime__V1__Capability caps;
    Runtime__V1__SecurityProfile seccomp;
    Runtime__V1__PodSandboxConfig pod;
    Runtime__V1__PodSandboxMetadata pmeta;
    Runtime__V1__LinuxPodSandboxConfig plinux;
    Runtime__V1__LinuxSandboxSecurityContext psc;
    Runtime__V1__NamespaceOption pnso; /* the pod's, once fx_pod_modes() attached it */
    json_t *image_config;
    char *paths[32]; /* owned strings the input points at */
    size_t n_paths;
    struct oci_spec_input in;
};

static const char *fx_path(struct fx *f, const char *rel)
{
    assert_true(f->n_paths < ARRAY_SIZE(f->paths));
    f->paths[f->n_paths] = tpath(rel);
    return f->paths[f->n_paths++];
}

/* The lists kubelet sends for procMount Default (the runtime's defaults). */
static char *kubelet_masked[] = {
    S("/proc/acpi"),
    S("/proc/asound"),
    S("/proc/kcore"),
    S("/proc/keys"),
    S("/proc/latency_stats"),
    S("/proc/timer_list"),
    S("/proc/timer_stats"),
    S("/proc/sched_debug"),
    S("/proc/scsi"),
    S("/sys/firmware"),
    S("/sys/devices/virtual/powercap"),
};
static char *kubelet_readonly[] = {
    S("/proc/bus"), S("/proc/fs"), S("/proc/irq"), S("/proc/sys"), S("/proc/sysrq-trigger"),
};

static void fx_init(struct fx *f)
{
    memset(f, 0, sizeof(*f));
    f->ctr = (Runtime__V1__ContainerConfig)RUNTIME__V1__CONTAINER_CONFIG__INIT;
    f->cmeta = (Runtime__V1__ContainerMetadata)RUNTIME__V1__CONTAINER_METADATA__INIT;
    f->image = (Runtime__V1__ImageSpec)RUNTIME__V1__IMAGE_SPEC__INIT;
    f->lc = (Runtime__V1__LinuxContainerConfig)RUNTIME__V1__LINUX_CONTAINER_CONFIG__INIT;
    f->sc = (Runtime__V1__LinuxContainerSecurityContext)
        RUNTIME__V1__LINUX_CONTAINER_SECURITY_CONTEXT__INIT;
    f->nso = (Runtime__V1__NamespaceOption)RUNTIME__V1__NAMESPACE_OPTION__INIT;
    f->res = (Runtime__V1__LinuxContainerResources)RUNTIME__V1__LINUX_CONTAINER_RESOURCES__INIT;
    f->caps = (Runtime__V1__Capability)RUNTIME__V1__CAPABILITY__INIT;
    f->in.host.n_cpus = 64; /* the golden cpusets hold on any host */
    f->seccomp = (Runtime__V1__SecurityProfile)RUNTIME__V1__SECURITY_PROFILE__INIT;
    f->pod = (Runtime__V1__PodSandboxConfig)RUNTIME__V1__POD_SANDBOX_CONFIG__INIT;
    f->pmeta = (Runtime__V1__PodSandboxMetadata)RUNTIME__V1__POD_SANDBOX_METADATA__INIT;
    f->plinux = (Runtime__V1__LinuxPodSandboxConfig)RUNTIME__V1__LINUX_POD_SANDBOX_CONFIG__INIT;
    f->psc =
        (Runtime__V1__LinuxSandboxSecurityContext)RUNTIME__V1__LINUX_SANDBOX_SECURITY_CONTEXT__INIT;
    f->pnso = (Runtime__V1__NamespaceOption)RUNTIME__V1__NAMESPACE_OPTION__INIT;

    f->cmeta.name = S("busybox");
    f->ctr.metadata = &f->cmeta;
    f->image.image = S("sha256:3f57d9401f8d42f986df300f0c69192fc41da28ccc8d797829467780db3dd741");
    f->image.user_specified_image = S("docker.io/library/busybox:latest");
    f->ctr.image = &f->image;
    f->sc.namespace_options = &f->nso;
    f->sc.masked_paths = kubelet_masked;
    f->sc.n_masked_paths = ARRAY_SIZE(kubelet_masked);
    f->sc.readonly_paths = kubelet_readonly;
    f->sc.n_readonly_paths = ARRAY_SIZE(kubelet_readonly);
    f->lc.security_context = &f->sc;
    f->ctr.linux = &f->lc;

    f->pmeta.name = S("web-0");
    f->pmeta.uid = S("6f1c2a9e-0001");
    f->pmeta.namespace_ = S("default");
    f->pod.metadata = &f->pmeta;
    f->pod.hostname = S("web-0");
    f->plinux.cgroup_parent = S("/kubepods/besteffort/pod6f1c2a9e");
    f->plinux.security_context = &f->psc;
    f->pod.linux = &f->plinux;

    f->image_config =
        json_pack("{s:{s:[s], s:[s]}}", "config", "Env",
                  "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "Cmd", "sh");
    struct oci_spec_input *in = &f->in;
    in->ctr = &f->ctr;
    in->pod = &f->pod;
    in->image_config = f->image_config;
    in->container_id = "c0ffee01";
    in->sandbox_id = "5a4db0c5";
    in->rootfs = fx_path(f, "rootfs");
    in->netns_path = "/run/tinycri/ns/5a4db0c5/net";
    in->ipc_ns_path = "/run/tinycri/ns/5a4db0c5/ipc";
    in->uts_ns_path = "/run/tinycri/ns/5a4db0c5/uts";
    in->pid_ns_path = "/proc/4242/ns/pid";
    in->hostname_file = fx_path(f, "sandbox/hostname");
    in->hosts_file = fx_path(f, "sandbox/hosts");
    in->resolv_file = fx_path(f, "sandbox/resolv.conf");
    in->shm_dir = fx_path(f, "sandbox/shm");
    in->volumes_dir = fx_path(f, "vol");
    in->seccomp_localhost_root = fx_path(f, "seccomp");
    in->host.cgroup_v2 = OCI_SPEC_YES;
    in->host.caps = ((uint64_t)1 << 41) - 1; /* up to CAP_CHECKPOINT_RESTORE */
    in->host.arch = SECCOMP_ARCH_X86_64;
    in->host.dev_dir = fx_path(f, "dev");
    in->host.hostname = "node-1";
    in->host.mountinfo = fx_path(f, "mountinfo");
}

static void fx_clear(struct fx *f)
{
    json_decref(f->image_config);
    for (size_t i = 0; i < f->n_paths; i++)
        free(f->paths[i]);
}

/*
 * Give the pod these namespace modes, with the paths pod/sandbox has for
 * them: no pinned network/UTS files for a host-network pod, no IPC file and
 * the host's /dev/shm for a host-IPC pod, a pod-init only for pid POD.
 */
static void fx_pod_modes(struct fx *f, Runtime__V1__NamespaceMode net,
                         Runtime__V1__NamespaceMode ipc, Runtime__V1__NamespaceMode pid)
{
    f->pnso.network = net;
    f->pnso.ipc = ipc;
    f->pnso.pid = pid;
    f->psc.namespace_options = &f->pnso;
    bool host_net = net == RUNTIME__V1__NAMESPACE_MODE__NODE;
    f->in.netns_path = host_net ? NULL : "/run/tinycri/ns/5a4db0c5/net";
    f->in.uts_ns_path = host_net ? NULL : "/run/tinycri/ns/5a4db0c5/uts";
    bool host_ipc = ipc == RUNTIME__V1__NAMESPACE_MODE__NODE;
    f->in.ipc_ns_path = host_ipc ? NULL : "/run/tinycri/ns/5a4db0c5/ipc";
    f->in.shm_dir = host_ipc ? "/dev/shm" : fx_path(f, "sandbox/shm");
    f->in.pid_ns_path = pid == RUNTIME__V1__NAMESPACE_MODE__POD ? "/proc/4242/ns/pid" : NULL;
}

static void set_image_config(struct fx *f, json_t *cfg)
{
    json_decref(f->image_config);
    f->image_config = cfg;
    f->in.image_config = cfg;
}

static json_t *build_ok(struct fx *f)
{
    struct error *err = NULL;
    json_t *spec = oci_spec_build(&f->in, &err);
    if (!spec)
        fail_msg("oci_spec_build: %s", err->msg);
    return spec;
}

static struct error *build_fail(struct fx *f, int code)
{
    struct error *err = NULL;
    json_t *spec = oci_spec_build(&f->in, &err);
    if (spec) {
        json_decref(spec);
        fail_msg("oci_spec_build succeeded, expected %s", grpc_code_name(code));
    }
    assert_non_null(err);
    if (err->grpc_code != code)
        fail_msg("got %s (%s), expected %s", grpc_code_name(err->grpc_code), err->msg,
                 grpc_code_name(code));
    return err;
}

static void expect_fail(struct fx *f, int code, const char *needle)
{
    struct error *err = build_fail(f, code);
    if (needle && !strstr(err->msg, needle))
        fail_msg("error \"%s\" lacks \"%s\"", err->msg, needle);
    error_free(err);
}

static char *replace_all(const char *s, const char *from, const char *to)
{
    struct buf b;
    buf_init(&b, 64 * 1024 * 1024);
    size_t fl = strlen(from);
    const char *p;
    while ((p = strstr(s, from))) {
        assert_int_equal(buf_append(&b, s, (size_t)(p - s)), 0);
        assert_int_equal(buf_append(&b, to, strlen(to)), 0);
        s = p + fl;
    }
    assert_int_equal(buf_append(&b, s, strlen(s) + 1), 0);
    return buf_take_str(&b, NULL);
}

static void check_golden(const json_t *spec, const char *name)
{
    _cleanup_free_ char *text = json_dumps(spec, JSON_SORT_KEYS | JSON_INDENT(2));
    assert_non_null(text);
    _cleanup_free_ char *norm = replace_all(text, tmp, "@TMP@");
    _cleanup_free_ char *actual = xasprintf("%s\n", norm);
    _cleanup_free_ char *path = xasprintf("%s/oci_spec/%s.json", TEST_DATA_DIR, name);
    if (getenv("UPDATE_GOLDEN")) {
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fputs(actual, f);
        fclose(f);
        return;
    }
    struct error *err = NULL;
    _cleanup_free_ char *expected = read_file_capped(path, 4 * 1024 * 1024, NULL, &err);
    if (!expected)
        fail_msg("%s (run with UPDATE_GOLDEN=1 to create it)", err->msg);
    if (strcmp(expected, actual) != 0) {
        _cleanup_free_ char *out = xasprintf("%s.%s.actual.json", tmp, name);
        FILE *f = fopen(out, "w");
        assert_non_null(f);
        fputs(actual, f);
        fclose(f);
        _cleanup_free_ char *cmd = xasprintf("diff -u %s %s >&2", path, out);
        if (system(cmd) < 0)
            fprintf(stderr, "cannot run diff\n");
        fail_msg("%s differs from the golden file (actual output: %s); "
                 "review, then rerun with UPDATE_GOLDEN=1 to accept it",
                 path, out);
    }
}

static const json_t *jget(const json_t *j, const char *path)
{
    _cleanup_free_ char *copy = xstrdup(path);
    char *save = NULL;
    for (char *k = strtok_r(copy, ".", &save); k && j; k = strtok_r(NULL, ".", &save)) {
        if (json_is_array(j))
            j = json_array_get(j, strtoul(k, NULL, 10));
        else
            j = json_object_get(j, k);
    }
    return j;
}

static const char *jstr(const json_t *j, const char *path)
{
    return json_string_value(jget(j, path));
}

static bool array_has_str(const json_t *a, const char *s)
{
    size_t i;
    const json_t *v;
    json_array_foreach(a, i, v)
    {
        if (json_is_string(v) && strcmp(json_string_value(v), s) == 0)
            return true;
    }
    return false;
}

static const json_t *find_mount(const json_t *spec, const char *dst)
{
    size_t i;
    const json_t *m;
    json_array_foreach(json_object_get(spec, "mounts"), i, m)
    {
        if (strcmp(jstr(m, "destination"), dst) == 0)
            return m;
    }
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Golden scenarios                                                         */

static void test_golden_minimal(void **state)
{
    struct fx f;
    fx_init(&f);
    _cleanup_json_ json_t *spec = build_ok(&f);
    check_golden(spec, "minimal");
    /* The essentials, stated once more in plain asserts. */
    assert_string_equal(jstr(spec, "process.args.0"), "sh");
    assert_int_equal(json_integer_value(jget(spec, "process.user.uid")), 0);
    assert_int_equal(json_array_size(jget(spec, "process.user.additionalGids")), 2);
    assert_null(jget(spec, "linux.seccomp"));
    assert_null(jget(spec, "process.oomScoreAdj"));
    assert_string_equal(jstr(spec, "linux.cgroupsPath"),
                        "/kubepods/besteffort/pod6f1c2a9e/c0ffee01");
    /* The sandbox's /dev/shm replaces the default tmpfs. */
    assert_string_equal(jstr(find_mount(spec, "/dev/shm"), "type"), "bind");
    fx_clear(&f);
}

static void test_golden_privileged(void **state)
{
    if (!have_dev)
        skip();
    struct fx f;
    fx_init(&f);
    f.sc.privileged = true;
    f.psc.privileged = true;
    f.sc.seccomp = &f.seccomp; /* RuntimeDefault, ignored when privileged */
    static char *drop[] = {S("NET_RAW")};
    f.caps.drop_capabilities = drop;
    f.caps.n_drop_capabilities = 1;
    f.sc.capabilities = &f.caps;
    _cleanup_json_ json_t *spec = build_ok(&f);
    check_golden(spec, "privileged");
    assert_int_equal(json_array_size(jget(spec, "process.capabilities.bounding")), 41);
    assert_null(jget(spec, "linux.maskedPaths"));
    assert_null(jget(spec, "linux.readonlyPaths"));
    assert_null(jget(spec, "linux.seccomp"));
    assert_true(array_has_str(jget(find_mount(spec, "/sys"), "options"), "rw"));
    assert_true(array_has_str(jget(find_mount(spec, "/sys/fs/cgroup"), "options"), "rw"));
    /* /dev/console and /dev/pts are not passed through, nor non-devices. */
    const json_t *devs = jget(spec, "linux.devices");
    assert_int_equal(json_array_size(devs), 3);
    assert_string_equal(jstr(devs, "0.path"), "/dev/null");
    assert_string_equal(jstr(devs, "2.path"), "/dev/snd/controlC0");
    fx_clear(&f);
}

static void test_golden_full(void **state)
{
    if (!have_dev)
        skip();
    struct fx f;
    fx_init(&f);
    set_image_config(&f, json_pack("{s:{s:[s,s], s:[s], s:[s,s], s:s, s:s}}", "config",
                                   "Entrypoint", "/bin/app", "--serve", "Cmd", "--default", "Env",
                                   "PATH=/app/bin:/usr/bin:/bin", "MODE=image", "WorkingDir",
                                   "/srv", "User", "nobody"));
    f.cmeta.name = S("app");
    static char *args[] = {S("--port=8080"), S("--verbose")};
    f.ctr.args = args;
    f.ctr.n_args = 2;
    f.ctr.working_dir = S("/srv/app");
    f.ctr.tty = true;
    f.ctr.stdin = true;
    static Runtime__V1__KeyValue e1 = RUNTIME__V1__KEY_VALUE__INIT,
                                 e2 = RUNTIME__V1__KEY_VALUE__INIT;
    e1.key = S("MODE");
    e1.value = (ProtobufCBinaryData){4, (uint8_t *)"prod"};
    e2.key = S("DB_URL");
    e2.value = (ProtobufCBinaryData){13, (uint8_t *)"postgres://db"};
    static Runtime__V1__KeyValue *envs[] = {&e1, &e2};
    f.ctr.envs = envs;
    f.ctr.n_envs = 2;

    static Runtime__V1__Mount m[4];
    for (size_t i = 0; i < 4; i++)
        m[i] = (Runtime__V1__Mount)RUNTIME__V1__MOUNT__INIT;
    m[0].container_path = S("/var/lib/app/data");
    m[0].host_path = S(fx_path(&f, "host/data"));
    m[0].readonly = true;
    m[0].recursive_read_only = true;
    m[1].container_path = S("/mnt/shared");
    m[1].host_path = S(fx_path(&f, "host/shared"));
    m[1].propagation = RUNTIME__V1__MOUNT_PROPAGATION__PROPAGATION_BIDIRECTIONAL;
    m[2].container_path = S("/cache/");
    m[2].host_path = S(fx_path(&f, "host/link")); /* symlink, resolved */
    m[2].propagation = RUNTIME__V1__MOUNT_PROPAGATION__PROPAGATION_HOST_TO_CONTAINER;
    m[2].selinux_relabel = true;
    m[3].container_path = S("/etc/hosts"); /* replaces the sandbox's */
    m[3].host_path = S(fx_path(&f, "host/hosts"));
    m[3].readonly = true;
    static Runtime__V1__Mount *mounts[] = {&m[0], &m[1], &m[2], &m[3]};
    f.ctr.mounts = mounts;
    f.ctr.n_mounts = 4;

    static Runtime__V1__Device d[2];
    d[0] = (Runtime__V1__Device)RUNTIME__V1__DEVICE__INIT;
    d[0].host_path = S(fx_path(&f, "dev/sda"));
    d[0].container_path = S("/dev/xvda");
    d[0].permissions = S("rw");
    d[1] = (Runtime__V1__Device)RUNTIME__V1__DEVICE__INIT;
    d[1].host_path = S(fx_path(&f, "dev/snd"));
    d[1].container_path = S("/dev/snd");
    d[1].permissions = S("rwm");
    static Runtime__V1__Device *devices[] = {&d[0], &d[1]};
    f.ctr.devices = devices;
    f.ctr.n_devices = 2;

    f.res.cpu_shares = 512;
    f.res.cpu_quota = 50000;
    f.res.cpu_period = 100000;
    f.res.cpuset_cpus = S("0-1");
    f.res.cpuset_mems = S("0");
    f.res.memory_limit_in_bytes = 268435456;
    f.res.oom_score_adj = 500;
    static Runtime__V1__HugepageLimit hp = RUNTIME__V1__HUGEPAGE_LIMIT__INIT;
    hp.page_size = S("2MB");
    hp.limit = 1073741824;
    static Runtime__V1__HugepageLimit *hps[] = {&hp};
    f.res.hugepage_limits = hps;
    f.res.n_hugepage_limits = 1;
    static Runtime__V1__LinuxContainerResources__UnifiedEntry u =
        RUNTIME__V1__LINUX_CONTAINER_RESOURCES__UNIFIED_ENTRY__INIT;
    u.key = S("memory.high");
    u.value = S("200M");
    static Runtime__V1__LinuxContainerResources__UnifiedEntry *us[] = {&u};
    f.res.unified = us;
    f.res.n_unified = 1;
    f.lc.resources = &f.res;

    static char *add[] = {S("NET_ADMIN"), S("sys_time")};
    static char *drop[] = {S("MKNOD"), S("CAP_NET_RAW")};
    f.caps.add_capabilities = add;
    f.caps.n_add_capabilities = 2;
    f.caps.drop_capabilities = drop;
    f.caps.n_drop_capabilities = 2;
    f.sc.capabilities = &f.caps;
    f.sc.readonly_rootfs = true;
    f.sc.no_new_privs = true;
    f.sc.run_as_username = S("app");
    static int64_t groups[] = {2000, 44};
    f.sc.supplemental_groups = groups;
    f.sc.n_supplemental_groups = 2;
    f.sc.seccomp = &f.seccomp; /* RuntimeDefault */
    f.nso.network = RUNTIME__V1__NAMESPACE_MODE__NODE;
    f.nso.pid = RUNTIME__V1__NAMESPACE_MODE__POD;
    fx_pod_modes(&f, RUNTIME__V1__NAMESPACE_MODE__NODE, RUNTIME__V1__NAMESPACE_MODE__POD,
                 RUNTIME__V1__NAMESPACE_MODE__POD);

    static Runtime__V1__LinuxPodSandboxConfig__SysctlsEntry sy =
        RUNTIME__V1__LINUX_POD_SANDBOX_CONFIG__SYSCTLS_ENTRY__INIT;
    sy.key = S("kernel.shm_rmid_forced");
    sy.value = S("1");
    static Runtime__V1__LinuxPodSandboxConfig__SysctlsEntry *sys[] = {&sy};
    f.plinux.sysctls = sys;
    f.plinux.n_sysctls = 1;
    f.plinux.cgroup_parent =
        S("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod6f1c2a9e.slice");
    f.in.systemd_cgroup = true;

    _cleanup_json_ json_t *spec = build_ok(&f);
    check_golden(spec, "full");

    assert_string_equal(jstr(spec, "process.args.0"), "/bin/app");
    assert_string_equal(jstr(spec, "process.args.2"), "--port=8080");
    assert_int_equal(json_array_size(jget(spec, "process.args")), 4);
    assert_int_equal(json_integer_value(jget(spec, "process.user.uid")), 1000);
    assert_int_equal(json_integer_value(jget(spec, "process.user.gid")), 1001);
    assert_true(json_is_true(jget(spec, "root.readonly")));
    assert_string_equal(jstr(spec, "linux.rootfsPropagation"), "rshared");
    assert_string_equal(jstr(spec, "linux.cgroupsPath"),
                        "kubepods-burstable-pod6f1c2a9e.slice:tinycri:c0ffee01");
    const json_t *ns = jget(spec, "linux.namespaces");
    size_t i;
    const json_t *n;
    json_array_foreach(ns, i, n)
    {
        assert_string_not_equal(jstr(n, "type"), "network");
    }
    assert_string_equal(jstr(ns, "0.path"), "/proc/4242/ns/pid");
    /* Sandbox /etc/hosts replaced by the CRI mount, and its readonly follows the rootfs. */
    assert_string_equal(jstr(find_mount(spec, "/etc/hosts"), "source"), m[3].host_path);
    assert_true(array_has_str(jget(find_mount(spec, "/etc/hostname"), "options"), "ro"));
    fx_clear(&f);
}

static void test_golden_image_volumes(void **state)
{
    struct fx f;
    fx_init(&f);
    set_image_config(&f, json_pack("{s:{s:[s], s:{s:{}, s:{}, s:{}, s:{}}}}", "config", "Cmd",
                                   "redis-server", "Volumes", "/data", "/var/lib/redis/", "/cache",
                                   "/odd path_x"));
    static Runtime__V1__Mount m = RUNTIME__V1__MOUNT__INIT;
    m.container_path = S("/cache");
    m.host_path = S(fx_path(&f, "host/cache"));
    static Runtime__V1__Mount *mounts[] = {&m};
    f.ctr.mounts = mounts;
    f.ctr.n_mounts = 1;
    _cleanup_json_ json_t *spec = build_ok(&f);
    check_golden(spec, "image_volumes");

    struct stat st;
    _cleanup_free_ char *v1 = tpath("vol/data");
    _cleanup_free_ char *v2 = tpath("vol/var_lib_redis");
    _cleanup_free_ char *v3 = tpath("vol/odd%20path%5fx");
    _cleanup_free_ char *v4 = tpath("vol/cache");
    assert_int_equal(stat(v1, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(stat(v2, &st), 0);
    assert_int_equal(stat(v3, &st), 0);
    assert_int_equal(stat(v4, &st), -1); /* the CRI mount wins */
    assert_string_equal(jstr(find_mount(spec, "/cache"), "source"), m.host_path);
    assert_string_equal(jstr(find_mount(spec, "/var/lib/redis"), "source"), v2);
    fx_clear(&f);
}

/* ------------------------------------------------------------------------ */
/* process.args                                                             */

/* The volume list pod/volume seeds: sorted, cleaned, minus CRI mounts and the pod's files. */
static void test_image_volume_list(void **state)
{
    struct fx f;
    fx_init(&f);
    set_image_config(&f, json_pack("{s:{s:{s:{}, s:{}, s:{}, s:{}, s:{}}}}", "config", "Volumes",
                                   "/var/lib/redis/", "/data", "/cache", "/etc/hosts", "/dev/shm"));
    static Runtime__V1__Mount m = RUNTIME__V1__MOUNT__INIT;
    m.container_path = S("/cache/");
    m.host_path = S(fx_path(&f, "host/cache"));
    static Runtime__V1__Mount *mounts[] = {&m};
    f.ctr.mounts = mounts;
    f.ctr.n_mounts = 1;
    struct oci_spec_volumes v;
    struct error *err = NULL;
    assert_int_equal(oci_spec_image_volumes(&f.ctr, f.image_config, &v, &err), 0);
    assert_int_equal(v.n, 2);
    assert_string_equal(v.paths[0], "/data");
    assert_string_equal(v.names[0], "data");
    assert_string_equal(v.paths[1], "/var/lib/redis");
    assert_string_equal(v.names[1], "var_lib_redis");
    oci_spec_volumes_clear(&v);
    assert_int_equal(v.n, 0);
    /* No config, no Volumes, null Volumes: none. */
    assert_int_equal(oci_spec_image_volumes(&f.ctr, NULL, &v, &err), 0);
    assert_int_equal(v.n, 0);
    set_image_config(&f, json_pack("{s:{s:n}}", "config", "Volumes"));
    assert_int_equal(oci_spec_image_volumes(&f.ctr, f.image_config, &v, &err), 0);
    assert_int_equal(v.n, 0);
    set_image_config(&f, json_pack("{s:{s:{s:{}}}}", "config", "Volumes", "relative"));
    assert_int_equal(oci_spec_image_volumes(&f.ctr, f.image_config, &v, &err), -1);
    assert_int_equal(err->grpc_code, GRPC_INVALID_ARGUMENT);
    error_free(err);
    fx_clear(&f);
}

static void test_args_table(void **state)
{
    static char *c_cmd[] = {S("/bin/echo")};
    static char *c_args[] = {S("hello"), S("world")};
    static const struct {
        const char *image; /* image config JSON */
        char **cmd;
        size_t n_cmd;
        char **args;
        size_t n_args;
        const char *want; /* space-joined, NULL: error */
    } cases[] = {
        {"{\"Entrypoint\":[\"/ep\"],\"Cmd\":[\"c1\",\"c2\"]}", NULL, 0, NULL, 0, "/ep c1 c2"},
        {"{\"Entrypoint\":[\"/ep\"],\"Cmd\":[\"c1\"]}", NULL, 0, c_args, 2, "/ep hello world"},
        {"{\"Entrypoint\":[\"/ep\"],\"Cmd\":[\"c1\"]}", c_cmd, 1, NULL, 0, "/bin/echo"},
        {"{\"Entrypoint\":[\"/ep\"],\"Cmd\":[\"c1\"]}", c_cmd, 1, c_args, 2,
         "/bin/echo hello world"},
        {"{\"Cmd\":[\"sh\",\"-c\",\"true\"]}", NULL, 0, NULL, 0, "sh -c true"},
        {"{\"Cmd\":[\"sh\"]}", NULL, 0, c_args, 2, "hello world"},
        {"{\"Entrypoint\":[\"\"],\"Cmd\":[\"sh\"]}", NULL, 0, NULL, 0, "sh"},
        {"{\"Entrypoint\":null,\"Cmd\":null}", c_cmd, 1, NULL, 0, "/bin/echo"},
        {"{\"config\":{\"Entrypoint\":[\"/nested\"]}}", NULL, 0, NULL, 0, "/nested"},
        {"{}", NULL, 0, NULL, 0, NULL},
        {"{\"Entrypoint\":[\"/ep\"]}", NULL, 0, NULL, 0, "/ep"},
        {"{\"Entrypoint\":[\"\"]}", NULL, 0, NULL, 0, NULL},
        {"{\"Cmd\":\"sh\"}", NULL, 0, NULL, 0, NULL},
        {"{\"Cmd\":[1]}", NULL, 0, NULL, 0, NULL},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        Runtime__V1__ContainerConfig ctr = RUNTIME__V1__CONTAINER_CONFIG__INIT;
        ctr.command = cases[i].cmd;
        ctr.n_command = cases[i].n_cmd;
        ctr.args = cases[i].args;
        ctr.n_args = cases[i].n_args;
        _cleanup_json_ json_t *img = json_loads(cases[i].image, 0, NULL);
        assert_non_null(img);
        struct error *err = NULL;
        _cleanup_json_ json_t *args = oci_spec_process_args(&ctr, img, &err);
        if (!cases[i].want) {
            if (args)
                fail_msg("case %zu: expected an error", i);
            assert_int_equal(err->grpc_code, GRPC_INVALID_ARGUMENT);
            error_free(err);
            continue;
        }
        if (!args)
            fail_msg("case %zu: %s", i, err->msg);
        char joined[256] = "";
        size_t k;
        const json_t *a;
        json_array_foreach(args, k, a)
        {
            if (k)
                strcat(joined, " ");
            strcat(joined, json_string_value(a));
        }
        if (strcmp(joined, cases[i].want) != 0)
            fail_msg("case %zu: got \"%s\", want \"%s\"", i, joined, cases[i].want);
    }
    /* No image config at all. */
    Runtime__V1__ContainerConfig ctr = RUNTIME__V1__CONTAINER_CONFIG__INIT;
    struct error *err = NULL;
    assert_null(oci_spec_process_args(&ctr, NULL, &err));
    assert_non_null(strstr(err->msg, "no command specified"));
    error_free(err);
}

static void test_no_command(void **state)
{
    struct fx f;
    fx_init(&f);
    set_image_config(&f, json_pack("{s:{}}", "config"));
    expect_fail(&f, GRPC_INVALID_ARGUMENT, "no command specified");
    fx_clear(&f);
}

/* ------------------------------------------------------------------------ */
/* User resolution                                                          */

static void resolve(const char *rootfs_rel, const char *user, bool groups, uint32_t uid,
                    uint32_t gid, const uint32_t *gids, size_t n_gids)
{
    _cleanup_free_ char *rootfs = tpath(rootfs_rel);
    struct oci_spec_user u;
    struct error *err = NULL;
    if (oci_spec_resolve_user(rootfs, user, groups, &u, &err) < 0)
        fail_msg("resolve %s: %s", user, err->msg);
    assert_int_equal(u.uid, uid);
    assert_int_equal(u.gid, gid);
    if (u.n_additional_gids != n_gids)
        fail_msg("resolve %s: %zu additional gids, want %zu", user, u.n_additional_gids, n_gids);
    for (size_t i = 0; i < n_gids; i++)
        assert_int_equal(u.additional_gids[i], gids[i]);
    oci_spec_user_clear(&u);
}

static void resolve_fail(const char *rootfs_rel, const char *user, int code, const char *needle)
{
    _cleanup_free_ char *rootfs = tpath(rootfs_rel);
    struct oci_spec_user u;
    struct error *err = NULL;
    assert_int_equal(oci_spec_resolve_user(rootfs, user, true, &u, &err), -1);
    assert_non_null(err);
    if (err->grpc_code != code || (needle && !strstr(err->msg, needle)))
        fail_msg("resolve %s: got %s \"%s\"", user, grpc_code_name(err->grpc_code), err->msg);
    error_free(err);
}

static void test_user_resolution(void **state)
{
    resolve("rootfs", "0", true, 0, 0, (const uint32_t[]){0, 10}, 2);
    resolve("rootfs", "", true, 0, 0, (const uint32_t[]){0, 10}, 2);
    resolve("rootfs", "root", false, 0, 0, (const uint32_t[]){0}, 1);
    /* By name: gid from passwd; the group named like the user is not "supplementary". */
    resolve("rootfs", "app", true, 1000, 1001, (const uint32_t[]){1001, 44}, 2);
    resolve("rootfs", "1000", true, 1000, 1001, (const uint32_t[]){1001, 44}, 2);
    resolve("rootfs", "app:audio", true, 1000, 29, (const uint32_t[]){29, 44}, 2);
    resolve("rootfs", "1000:5000", true, 1000, 5000, (const uint32_t[]){5000, 44}, 2);
    resolve("rootfs", "app:0", false, 1000, 0, (const uint32_t[]){0}, 1);
    /* A uid without a passwd entry runs with gid 0. */
    resolve("rootfs", "4321", true, 4321, 0, (const uint32_t[]){0}, 1);
    resolve("rootfs", "4321:4321", true, 4321, 4321, (const uint32_t[]){4321}, 1);

    resolve_fail("rootfs", "ghost", GRPC_INVALID_ARGUMENT, "ghost");
    resolve_fail("rootfs", "app:ghosts", GRPC_INVALID_ARGUMENT, "ghosts");
    resolve_fail("rootfs", "a:b:c", GRPC_INVALID_ARGUMENT, "invalid user");
    resolve_fail("rootfs", ":0", GRPC_INVALID_ARGUMENT, "invalid user");
    resolve_fail("rootfs", "0:", GRPC_INVALID_ARGUMENT, "invalid user");
    resolve_fail("rootfs", "99999999999", GRPC_INVALID_ARGUMENT, "99999999999");
    resolve_fail("nonexistent", "0", GRPC_INTERNAL, "rootfs");
}

static void test_user_no_passwd(void **state)
{
    mkdir_at("bare/bin");
    resolve("bare", "1234:55", true, 1234, 55, (const uint32_t[]){55}, 1);
    resolve("bare", "0", true, 0, 0, (const uint32_t[]){0}, 1);
    resolve_fail("bare", "app", GRPC_INVALID_ARGUMENT, "no /etc/passwd");
}

/* Build the image trees below <base>/ and check that nothing resolves outside them. */
static void user_symlinks_stay_in_rootfs(const char *base)
{
    char img[8][64];
    for (int i = 0; i < 8; i++)
        snprintf(img[i], sizeof(img[i]), "%s/img%d", base, i);
    _cleanup_free_ char *p = NULL;
#define AT(i, rel) (free(p), p = xasprintf("%s/%s", img[i], rel), p)

    /* A host file the image must never see. */
    write_at("hostpasswd", "app:x:7777:7777::/:/bin/sh\n");
    _cleanup_free_ char *hostfile = tpath("hostpasswd");

    /* Absolute symlink into the image itself: followed, within the rootfs. */
    mkdir_at(AT(0, "etc"));
    mkdir_at(AT(0, "real"));
    write_at(AT(0, "real/passwd"), "app:x:4242:4243::/:/bin/sh\n");
    symlink_at("/real/passwd", AT(0, "etc/passwd"));
    resolve(img[0], "app", false, 4242, 4243, (const uint32_t[]){4243}, 1);

    /* Absolute symlink to the host file: resolves to <rootfs><hostfile>, absent. */
    mkdir_at(AT(1, "etc"));
    symlink_at(hostfile, AT(1, "etc/passwd"));
    resolve_fail(img[1], "app", GRPC_INVALID_ARGUMENT, "no /etc/passwd");
    resolve(img[1], "7777", false, 7777, 0, (const uint32_t[]){0}, 1);

    /* Relative climb-out: ".." stops at the rootfs. */
    mkdir_at(AT(2, "etc"));
    _cleanup_free_ char *climb = xasprintf("../../../../../../../..%s", hostfile);
    symlink_at(climb, AT(2, "etc/passwd"));
    resolve_fail(img[2], "app", GRPC_INVALID_ARGUMENT, "no /etc/passwd");

    /* /etc a symlink to "/etc": a loop inside the image, not the host's /etc. */
    mkdir_at(img[3]);
    symlink_at("/etc", AT(3, "etc"));
    resolve_fail(img[3], "root", GRPC_INTERNAL, NULL);

    /* /etc/passwd as a directory or a FIFO must not hang or be read. */
    mkdir_at(AT(4, "etc/passwd"));
    resolve_fail(img[4], "app", GRPC_INVALID_ARGUMENT, "not a regular file");
    mkdir_at(AT(5, "etc"));
    assert_int_equal(mkfifo(tpath_at(AT(5, "etc/passwd")), 0644), 0);
    resolve_fail(img[5], "app", GRPC_INVALID_ARGUMENT, "not a regular file");

    /* /etc a relative symlink through "..", landing back inside: followed. */
    mkdir_at(AT(6, "usr/etc"));
    write_at(AT(6, "usr/etc/passwd"), "app:x:5000:5001::/:/bin/sh\n");
    write_at(AT(6, "usr/etc/group"), "extra:x:6000:app\n");
    symlink_at("../../../usr/./lib/../etc", AT(6, "etc"));
    mkdir_at(AT(6, "usr/lib"));
    resolve(img[6], "app", true, 5000, 5001, (const uint32_t[]){5001, 6000}, 2);
#undef AT
}

static void test_user_symlinks_stay_in_rootfs(void **state)
{
    user_symlinks_stay_in_rootfs("native");
}

static void test_user_symlinks_portable_resolver(void **state)
{
    oci_spec_no_openat2 = true; /* reset_test_hooks() puts it back, also when this fails */
    user_symlinks_stay_in_rootfs("portable");
    resolve("rootfs", "app", true, 1000, 1001, (const uint32_t[]){1001, 44}, 2);
}

/* Test hooks back to their defaults, on every path out of a test (failures included). */
static int reset_test_hooks(void **state)
{
    oci_spec_no_openat2 = false;
    return 0;
}

static void test_user_file_too_big(void **state)
{
    mkdir_at("big/etc");
    _cleanup_free_ char *p = tpath("big/etc/passwd");
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    for (int i = 0; i < OCI_SPEC_FILE_MAX / 32 + 10; i++)
        fprintf(f, "user%08d:x:%d:%d::/:/bin/sh\n", i, i, i);
    fclose(f);
    resolve_fail("big", "user00000001", GRPC_RESOURCE_EXHAUSTED, NULL);
}

static void test_user_from_security_context(void **state)
{
    struct fx f;
    fx_init(&f);
    Runtime__V1__Int64Value uid = RUNTIME__V1__INT64_VALUE__INIT,
                            gid = RUNTIME__V1__INT64_VALUE__INIT;
    uid.value = 1000;
    gid.value = 3000;
    f.sc.run_as_user = &uid;
    f.sc.run_as_group = &gid;
    static int64_t sup[] = {3000, 4000};
    f.sc.supplemental_groups = sup;
    f.sc.n_supplemental_groups = 2;
    json_t *spec = build_ok(&f);
    assert_int_equal(json_integer_value(jget(spec, "process.user.uid")), 1000);
    assert_int_equal(json_integer_value(jget(spec, "process.user.gid")), 3000);
    const json_t *g = jget(spec, "process.user.additionalGids");
    assert_int_equal(json_array_size(g), 3); /* 3000, 44 (member of video), 4000 */
    assert_int_equal(json_integer_value(json_array_get(g, 1)), 44);
    json_decref(spec);

    /* Strict: no groups from the image. */
    f.sc.supplemental_groups_policy = RUNTIME__V1__SUPPLEMENTAL_GROUPS_POLICY__Strict;
    spec = build_ok(&f);
    assert_int_equal(json_array_size(jget(spec, "process.user.additionalGids")), 2);
    json_decref(spec);

    /* The image's User when the request has none. */
    f.sc.run_as_user = NULL;
    f.sc.run_as_group = NULL;
    set_image_config(&f, json_pack("{s:{s:[s],s:s}}", "config", "Cmd", "sh", "User", "app:audio"));
    spec = build_ok(&f);
    assert_int_equal(json_integer_value(jget(spec, "process.user.uid")), 1000);
    assert_int_equal(json_integer_value(jget(spec, "process.user.gid")), 29);
    json_decref(spec);

    f.sc.run_as_group = &gid;
    expect_fail(&f, GRPC_INVALID_ARGUMENT, "run_as_group");
    f.sc.run_as_group = NULL;
    uid.value = -1;
    f.sc.run_as_user = &uid;
    expect_fail(&f, GRPC_INVALID_ARGUMENT, "run_as_user");
    f.sc.run_as_user = NULL;
    f.sc.run_as_username = S("ghost");
    expect_fail(&f, GRPC_INVALID_ARGUMENT, "ghost");
    fx_clear(&f);
}

/* ------------------------------------------------------------------------ */
/* Environment and working directory                                        */

static void test_env_and_cwd(void **state)
{
    struct fx f;
    fx_init(&f);
    set_image_config(&f, json_pack("{s:{s:[s], s:[s,s,s], s:s}}", "config", "Cmd", "sh", "Env",
                                   "A=image", "B=image", "HOSTNAME=img", "WorkingDir", "/w"));
    static Runtime__V1__KeyValue e1 = RUNTIME__V1__KEY_VALUE__INIT;
    e1.key = S("A");
    e1.value = (ProtobufCBinaryData){3, (uint8_t *)"cri"};
    static Runtime__V1__KeyValue *envs[] = {&e1};
    f.ctr.envs = envs;
    f.ctr.n_envs = 1;
    f.pod.hostname = S("");
    json_t *spec = build_ok(&f);
    const json_t *env = jget(spec, "process.env");
    assert_int_equal(json_array_size(env), 4);
    assert_string_equal(jstr(env, "0"),
                        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    assert_string_equal(jstr(env, "1"), "HOSTNAME=img"); /* image replaces it in place */
    assert_string_equal(jstr(env, "2"), "A=cri");        /* CRI replaces it in place */
    assert_string_equal(jstr(env, "3"), "B=image");
    assert_string_equal(jstr(spec, "process.cwd"), "/w");
    json_decref(spec);

    set_image_config(&f, json_pack("{s:{s:[s]}}", "config", "Cmd", "sh"));
    spec = build_ok(&f);
    assert_string_equal(jstr(spec, "process.env.1"), "HOSTNAME=node-1");
    assert_string_equal(jstr(spec, "process.cwd"), "/");
    json_decref(spec);

    e1.value = (ProtobufCBinaryData){3, (uint8_t *)"a\0b"};
    expect_fail(&f, GRPC_INVALID_ARGUMENT, "NUL");
    e1.value = (ProtobufCBinaryData){3, (uint8_t *)"\xff\xfe!"};
    expect_fail(&f, GRPC_INVALID_ARGUMENT, "UTF-8");
    e1.value = (ProtobufCBinaryData){1, (uint8_t *)"x"};
    e1.key = S("A=B");
    expect_fail(&f, GRPC_INVALID_ARGUMENT, "A=B");
    e1.key = S("A");
    f.ctr.working_dir = S("relative");
    expect_fail(&f, GRPC_INVALID_ARGUMENT, "relative");
    fx_clear(&f);
}

/* ------------------------------------------------------------------------ */
/* Mounts                                                                   */

static void test_bad_mount_host_path(void **state)
{
    struct fx f;
    fx_init(&f);
    static Runtime__V1__Mount m = RUNTIME__V1__MOUNT__INIT;
    m.container_path = S("/data");
    m.host_path = S(fx_path(&f, "host/missing"));
    static Runtime__V1__Mount *mounts[] = {&m};
    f.ctr.mounts = mounts;
    f.ctr.n_mounts = 1;
    expect_fail(&f, GRPC_INVALID_ARGUMENT, m.host_path);

    m.host_path = S(fx_path(&f, "host/data"));
    m.container_path = S("data");
    expect_fail(&f, GRPC_INVALID_ARGUMENT, "not absolute");
    m.container_path = S("/data");
    m.recursive_read_only = true;
    expect_fail(&f, GRPC_INVALID_ARGUMENT, "recursive read-only");
    m.recursive_read_only = false;
    static Runtime__V1__IDMapping idm = RUNTIME__V1__IDMAPPING__INIT;
    static Runtime__V1__IDMapping *idms[] = {&idm};
    m.uidmappings = idms;
    m.n_uidmappings = 1;
    expect_fail(&f, GRPC_INVALID_ARGUMENT, "idmapped");
    m.n_uidmappings = 0;
    static Runtime__V1__ImageSpec img = RUNTIME__V1__IMAGE_SPEC__INIT;
    img.image = S("docker.io/library/alpine:3");
    m.image = &img;
    expect_fail(&f, GRPC_UNIMPLEMENTED, "image mounts");
    fx_clear(&f);
}

static void test_mount_paths_checked(void **state)
{
    /* Each refusal names the field (the probe of issue 12 found each one accepted). */
    struct fx f;
    fx_init(&f);
    static Runtime__V1__Mount ok = RUNTIME__V1__MOUNT__INIT;
    ok.container_path = S("/data");
    ok.host_path = S(fx_path(&f, "host/data"));
    static Runtime__V1__Mount m = RUNTIME__V1__MOUNT__INIT;
    static Runtime__V1__Mount *mounts[] = {&ok, &m};
    f.ctr.mounts = mounts;
    f.ctr.n_mounts = 2;
    m.container_path = S("/hostroot");
    m.host_path = S("../../..");
    expect_fail(&f, GRPC_INVALID_ARGUMENT,
                "config.mounts[1].host_path \"../../..\" is not absolute");
    m.host_path = S("");
    expect_fail(&f, GRPC_INVALID_ARGUMENT, "config.mounts[1].host_path is empty");
    m.host_path = S(fx_path(&f, "host/data"));
    m.container_path = S("/");
    expect_fail(&f, GRPC_INVALID_ARGUMENT,
                "config.mounts[1].container_path / is the container's root");
    m.container_path = S("//./");
    expect_fail(&f, GRPC_INVALID_ARGUMENT, "is the container's root");
    m.container_path = S("/a/../b");
    expect_fail(&f, GRPC_INVALID_ARGUMENT, "config.mounts[1].container_path /a/../b has a \"..\"");
    m.container_path = S("/a\nb");
    expect_fail(&f, GRPC_INVALID_ARGUMENT,
                "config.mounts[1].container_path has a control character");
    m.container_path = S("/b");
    m.host_path = S("/tmp\r");
    expect_fail(&f, GRPC_INVALID_ARGUMENT, "config.mounts[1].host_path has a control character");
    m.host_path = S(fx_path(&f, "host/data"));
    /* Nothing over /proc or inside it, but for what lxcfs emulates (as runc has it). */
    m.container_path = S("/proc");
    expect_fail(&f, GRPC_INVALID_ARGUMENT, "nothing may be mounted over or inside /proc");
    m.container_path = S("/proc/1/root");
    expect_fail(&f, GRPC_INVALID_ARGUMENT, "inside /proc");
    m.container_path = S("/proc/meminfo");
    m.host_path = S(fx_path(&f, "host/hosts"));
    json_t *spec = build_ok(&f);
    assert_non_null(find_mount(spec, "/proc/meminfo"));
    json_decref(spec);
    m.container_path = S("/procedures");
    m.host_path = S(fx_path(&f, "host/data"));
    spec = build_ok(&f);
    assert_non_null(find_mount(spec, "/procedures"));
    json_decref(spec);
    fx_clear(&f);
}

static void test_mount_propagation_needs_host_support(void **state)
{
    struct fx f;
    fx_init(&f);
    static Runtime__V1__Mount m = RUNTIME__V1__MOUNT__INIT;
    m.container_path = S("/data");
    m.host_path = S(fx_path(&f, "host/data")); /* on the private root mount */
    static Runtime__V1__Mount *mounts[] = {&m};
    f.ctr.mounts = mounts;
    f.ctr.n_mounts = 1;
    m.propagation = RUNTIME__V1__MOUNT_PROPAGATION__PROPAGATION_BIDIRECTIONAL;
    expect_fail(&f, GRPC_FAILED_PRECONDITION, "not a shared mount");
    m.propagation = RUNTIME__V1__MOUNT_PROPAGATION__PROPAGATION_HOST_TO_CONTAINER;
    expect_fail(&f, GRPC_FAILED_PRECONDITION, "not a shared or slave mount");

    /* A slave mount is enough for host-to-container, not for bidirectional. */
    m.host_path = S(fx_path(&f, "host/cache"));
    json_t *spec = build_ok(&f);
    assert_string_equal(jstr(spec, "linux.rootfsPropagation"), "rslave");
    json_decref(spec);
    m.propagation = RUNTIME__V1__MOUNT_PROPAGATION__PROPAGATION_BIDIRECTIONAL;
    expect_fail(&f, GRPC_FAILED_PRECONDITION, "host/cache");

    /* Below an escaped mount point, found by its longest prefix. */
    m.host_path = S(fx_path(&f, "host/with space/sub"));
    spec = build_ok(&f);
    assert_string_equal(jstr(spec, "linux.rootfsPropagation"), "rshared");
    assert_true(array_has_str(jget(find_mount(spec, "/data"), "options"), "rshared"));
    json_decref(spec);

    f.in.host.mountinfo = fx_path(&f, "nonexistent");
    expect_fail(&f, GRPC_NOT_FOUND, "propagation");
    fx_clear(&f);
}

static void test_mount_over_dev(void **state)
{
    struct fx f;
    fx_init(&f);
    static Runtime__V1__Mount m = RUNTIME__V1__MOUNT__INIT;
    m.container_path = S("/dev");
    m.host_path = S(fx_path(&f, "host/data"));
    static Runtime__V1__Mount *mounts[] = {&m};
    f.ctr.mounts = mounts;
    f.ctr.n_mounts = 1;
    f.in.shm_dir = NULL;
    _cleanup_json_ json_t *spec = build_ok(&f);
    assert_null(find_mount(spec, "/dev/pts"));
    assert_null(find_mount(spec, "/dev/mqueue"));
    assert_null(find_mount(spec, "/dev/shm"));
    assert_string_equal(jstr(find_mount(spec, "/dev"), "type"), "bind");
    assert_non_null(find_mount(spec, "/proc"));
    fx_clear(&f);
}

static void test_shm_without_sandbox_dir(void **state)
{
    struct fx f;
    fx_init(&f);
    f.in.shm_dir = NULL;
    f.in.hostname_file = NULL;
    json_t *spec = build_ok(&f);
    assert_string_equal(jstr(find_mount(spec, "/dev/shm"), "type"), "tmpfs");
    assert_null(find_mount(spec, "/etc/hostname"));
    json_decref(spec);
    /* Host IPC: the host's /dev/shm. */
    f.nso.ipc = RUNTIME__V1__NAMESPACE_MODE__NODE;
    fx_pod_modes(&f, RUNTIME__V1__NAMESPACE_MODE__POD, RUNTIME__V1__NAMESPACE_MODE__NODE,
                 RUNTIME__V1__NAMESPACE_MODE__POD);
    spec = build_ok(&f);
    assert_string_equal(jstr(find_mount(spec, "/dev/shm"), "source"), "/dev/shm");
    const json_t *ns = jget(spec, "linux.namespaces");
    size_t i;
    const json_t *n;
    json_array_foreach(ns, i, n)
    {
        assert_string_not_equal(jstr(n, "type"), "ipc");
    }
    json_decref(spec);
    fx_clear(&f);
}

static void test_volume_names(void **state)
{
    static const struct {
        const char *in, *out;
    } ok[] = {
        {"/data", "data"},     {"/var/lib/mysql/", "var_lib_mysql"},
        {"//a/./b", "a_b"},    {"/a_b", "a%5fb"},
        {"/a b%", "a%20b%25"}, {"/.hidden", ".hidden"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(ok); i++) {
        struct error *err = NULL;
        _cleanup_free_ char *n = oci_spec_volume_name(ok[i].in, &err);
        assert_non_null(n);
        assert_string_equal(n, ok[i].out);
    }
    static const char *bad[] = {"relative", "/", "/a/../b", "/..", "//"};
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        struct error *err = NULL;
        assert_null(oci_spec_volume_name(bad[i], &err));
        assert_int_equal(err->grpc_code, GRPC_INVALID_ARGUMENT);
        error_free(err);
    }
    char longp[300];
    memset(longp, 'x', sizeof(longp) - 1);
    longp[0] = '/';
    longp[sizeof(longp) - 1] = '\0';
    struct error *err = NULL;
    assert_null(oci_spec_volume_name(longp, &err));
    error_free(err);
}

/* ------------------------------------------------------------------------ */
/* Capabilities                                                             */

static const json_t *bounding(const json_t *spec)
{
    return jget(spec, "process.capabilities.bounding");
}

static void test_capabilities(void **state)
{
    assert_int_equal(oci_spec_capability("NET_ADMIN"), 12);
    assert_int_equal(oci_spec_capability("cap_net_admin"), 12);
    assert_int_equal(oci_spec_capability("CAP_CHECKPOINT_RESTORE"), 40);
    assert_int_equal(oci_spec_capability("ALL"), -1);
    assert_int_equal(oci_spec_capability("NET_ADMINX"), -1);

    struct fx f;
    fx_init(&f);
    f.sc.capabilities = &f.caps;
    json_t *spec = build_ok(&f);
    assert_int_equal(json_array_size(bounding(spec)), 14);
    assert_null(jget(spec, "process.capabilities.ambient"));
    json_decref(spec);

    /* add ALL, then drop one. */
    static char *all[] = {S("ALL")};
    static char *chown[] = {S("chown")};
    f.caps.add_capabilities = all;
    f.caps.n_add_capabilities = 1;
    f.caps.drop_capabilities = chown;
    f.caps.n_drop_capabilities = 1;
    spec = build_ok(&f);
    assert_int_equal(json_array_size(bounding(spec)), 40);
    assert_false(array_has_str(bounding(spec), "CAP_CHOWN"));
    assert_true(array_has_str(bounding(spec), "CAP_SYS_ADMIN"));
    json_decref(spec);

    /* drop ALL, add one back; an explicit drop beats an add. */
    static char *add[] = {S("NET_BIND_SERVICE"), S("KILL")};
    static char *drop[] = {S("all"), S("KILL")};
    f.caps.add_capabilities = add;
    f.caps.n_add_capabilities = 2;
    f.caps.drop_capabilities = drop;
    f.caps.n_drop_capabilities = 2;
    spec = build_ok(&f);
    assert_int_equal(json_array_size(bounding(spec)), 1);
    assert_string_equal(jstr(bounding(spec), "0"), "CAP_NET_BIND_SERVICE");
    json_decref(spec);

    /* Ambient capabilities are raised everywhere they must be. */
    static char *amb[] = {S("NET_ADMIN")};
    f.caps.add_ambient_capabilities = amb;
    f.caps.n_add_ambient_capabilities = 1;
    spec = build_ok(&f);
    assert_string_equal(jstr(spec, "process.capabilities.ambient.0"), "CAP_NET_ADMIN");
    assert_string_equal(jstr(spec, "process.capabilities.inheritable.0"), "CAP_NET_ADMIN");
    assert_true(array_has_str(bounding(spec), "CAP_NET_ADMIN"));
    json_decref(spec);

    /* ALL: only what the daemon holds itself (here: no CAP_SYS_RESOURCE, no BPF). */
    f.caps.n_add_ambient_capabilities = 0;
    f.caps.add_capabilities = all;
    f.caps.n_add_capabilities = 1;
    f.caps.n_drop_capabilities = 0;
    f.in.host.caps = (((uint64_t)1 << 41) - 1) & ~(CAPBIT(24) | CAPBIT(39));
    spec = build_ok(&f);
    assert_int_equal(json_array_size(bounding(spec)), 39);
    assert_false(array_has_str(bounding(spec), "CAP_BPF"));
    assert_false(array_has_str(bounding(spec), "CAP_SYS_RESOURCE"));
    json_decref(spec);

    static char *bad[] = {S("NET_ADMIN"), S("FLY")};
    f.caps.add_capabilities = bad;
    f.caps.n_add_capabilities = 2;
    expect_fail(&f, GRPC_INVALID_ARGUMENT, "FLY");
    f.caps.n_add_capabilities = 0;
    f.caps.drop_capabilities = bad;
    f.caps.n_drop_capabilities = 2;
    expect_fail(&f, GRPC_INVALID_ARGUMENT, "FLY");
    f.caps.n_drop_capabilities = 0;
    f.caps.add_ambient_capabilities = all;
    f.caps.n_add_ambient_capabilities = 1;
    expect_fail(&f, GRPC_INVALID_ARGUMENT, "ALL");
    fx_clear(&f);
}

static void test_privileged_needs_privileged_sandbox(void **state)
{
    struct fx f;
    fx_init(&f);
    f.sc.privileged = true;
    expect_fail(&f, GRPC_INVALID_ARGUMENT, "privileged");
    fx_clear(&f);
}

/* ------------------------------------------------------------------------ */
/* Namespaces, cgroups, resources                                           */

static void test_namespaces(void **state)
{
    struct fx f;
    fx_init(&f);
    f.nso.pid = RUNTIME__V1__NAMESPACE_MODE__CONTAINER;
    f.in.host.cgroup_v2 = OCI_SPEC_NO;
    json_t *spec = build_ok(&f);
    const json_t *ns = jget(spec, "linux.namespaces");
    assert_int_equal(json_array_size(ns), 5);
    assert_string_equal(jstr(ns, "0.type"), "pid");
    assert_null(jget(ns, "0.path"));
    assert_string_equal(jstr(ns, "1.path"), f.in.ipc_ns_path);
    assert_string_equal(jstr(ns, "2.path"), f.in.uts_ns_path);
    assert_string_equal(jstr(ns, "3.type"), "mount");
    assert_string_equal(jstr(ns, "4.path"), f.in.netns_path);
    json_decref(spec);

    /* The host's namespaces come from the pod's modes. */
    f.nso.pid = RUNTIME__V1__NAMESPACE_MODE__NODE;
    f.nso.network = RUNTIME__V1__NAMESPACE_MODE__NODE;
    f.nso.ipc = RUNTIME__V1__NAMESPACE_MODE__NODE;
    fx_pod_modes(&f, RUNTIME__V1__NAMESPACE_MODE__NODE, RUNTIME__V1__NAMESPACE_MODE__NODE,
                 RUNTIME__V1__NAMESPACE_MODE__NODE);
    f.in.host.cgroup_v2 = OCI_SPEC_YES;
    spec = build_ok(&f);
    ns = jget(spec, "linux.namespaces");
    assert_int_equal(json_array_size(ns), 2);
    assert_string_equal(jstr(ns, "0.type"), "mount");
    assert_string_equal(jstr(ns, "1.type"), "cgroup");
    json_decref(spec);

    f.nso.pid = RUNTIME__V1__NAMESPACE_MODE__TARGET;
    f.nso.target_id = S("c0ffee00");
    expect_fail(&f, GRPC_NOT_FOUND, "c0ffee00");
    f.in.target_pid_ns_path = "/proc/77/ns/pid";
    spec = build_ok(&f);
    assert_string_equal(jstr(spec, "linux.namespaces.0.path"), "/proc/77/ns/pid");
    json_decref(spec);

    /* Modes a container cannot have, named by field. */
    f.nso.network = RUNTIME__V1__NAMESPACE_MODE__TARGET;
    expect_fail(&f, GRPC_INVALID_ARGUMENT,
                "namespace_options.network: mode TARGET is not supported for a container");
    f.nso.network = RUNTIME__V1__NAMESPACE_MODE__POD;
    f.nso.ipc = RUNTIME__V1__NAMESPACE_MODE__CONTAINER;
    expect_fail(&f, GRPC_INVALID_ARGUMENT, "namespace_options.ipc: mode CONTAINER");
    f.nso.ipc = RUNTIME__V1__NAMESPACE_MODE__POD;
    f.nso.pid = (Runtime__V1__NamespaceMode)9;
    expect_fail(&f, GRPC_INVALID_ARGUMENT, "namespace_options.pid");
    f.nso.pid = RUNTIME__V1__NAMESPACE_MODE__POD;
    /* The pod has its own network namespace, but the caller gave no file for it. */
    fx_pod_modes(&f, RUNTIME__V1__NAMESPACE_MODE__POD, RUNTIME__V1__NAMESPACE_MODE__POD,
                 RUNTIME__V1__NAMESPACE_MODE__POD);
    f.in.netns_path = NULL;
    expect_fail(&f, GRPC_INTERNAL, "network");
    f.in.netns_path = "/run/netns/x";

    Runtime__V1__UserNamespace userns = RUNTIME__V1__USER_NAMESPACE__INIT;
    f.nso.userns_options = &userns;
    userns.mode = RUNTIME__V1__NAMESPACE_MODE__NODE;
    json_decref(build_ok(&f));
    userns.mode = RUNTIME__V1__NAMESPACE_MODE__POD;
    json_decref(build_ok(&f)); /* an empty message: no user namespace asked for */
    static Runtime__V1__IDMapping idm = RUNTIME__V1__IDMAPPING__INIT;
    static Runtime__V1__IDMapping *idms[] = {&idm};
    userns.uids = idms;
    userns.n_uids = 1;
    expect_fail(&f, GRPC_INVALID_ARGUMENT, "user namespaces");
    fx_clear(&f);
}

/* The linux.namespaces entry of a type, or NULL. */
static const json_t *ns_entry(const json_t *spec, const char *type)
{
    size_t i;
    const json_t *n;
    json_array_foreach(jget(spec, "linux.namespaces"), i, n)
    {
        if (strcmp(jstr(n, "type"), type) == 0)
            return n;
    }
    return NULL;
}

#define NS_ABSENT ((const char *)1) /* no entry: the host's namespace */
#define NS_FRESH NULL               /* an entry without a path: a new namespace */

static void expect_ns(const json_t *spec, const char *type, const char *want, const char *what)
{
    const json_t *n = ns_entry(spec, type);
    if (want == NS_ABSENT) {
        if (n)
            fail_msg("%s: %s namespace present (%s), expected the host's", what, type,
                     jstr(n, "path") ? jstr(n, "path") : "new");
        return;
    }
    if (!n)
        fail_msg("%s: no %s namespace, expected %s", what, type, want ? want : "a new one");
    const char *path = jstr(n, "path");
    if ((want == NS_FRESH) != (path == NULL) || (want && strcmp(want, path) != 0))
        fail_msg("%s: %s namespace %s, expected %s", what, type, path ? path : "new",
                 want ? want : "a new one");
}

enum ctr_form {
    CTR_NO_LINUX,    /* no linux section at all */
    CTR_LINUX_EMPTY, /* linux: {} */
    CTR_NO_NSO,      /* a security context without namespace_options */
    CTR_NSO,         /* namespace_options as given */
};

static const Runtime__V1__NamespaceMode POD = RUNTIME__V1__NAMESPACE_MODE__POD,
                                        CONTAINER = RUNTIME__V1__NAMESPACE_MODE__CONTAINER,
                                        NODE = RUNTIME__V1__NAMESPACE_MODE__NODE,
                                        TARGET = RUNTIME__V1__NAMESPACE_MODE__TARGET;

struct modes {
    Runtime__V1__NamespaceMode net, ipc, pid;
};

/* One pod/container combination: build, then check each namespace and /dev/shm. */
static void check_modes(struct modes pod, enum ctr_form form, struct modes ctr)
{
    static const char netns[] = "/run/tinycri/ns/5a4db0c5/net",
                      utsns[] = "/run/tinycri/ns/5a4db0c5/uts",
                      ipcns[] = "/run/tinycri/ns/5a4db0c5/ipc", podpid[] = "/proc/4242/ns/pid",
                      target[] = "/proc/77/ns/pid";
    struct fx f;
    fx_init(&f);
    fx_pod_modes(&f, pod.net, pod.ipc, pod.pid);
    f.in.target_pid_ns_path = target;
    if (form == CTR_NO_LINUX)
        f.ctr.linux = NULL;
    else if (form == CTR_LINUX_EMPTY)
        f.lc.security_context = NULL;
    else if (form == CTR_NO_NSO)
        f.sc.namespace_options = NULL;
    if (form != CTR_NSO)
        ctr = (struct modes){POD, POD, POD}; /* what no options mean */
    f.nso.network = ctr.net;
    f.nso.ipc = ctr.ipc;
    f.nso.pid = ctr.pid;
    f.nso.target_id = S("c0ffee00");
    _cleanup_free_ char *what = xasprintf(
        "pod net/ipc/pid %s/%s/%s, container (form %d) %s/%s/%s",
        sandbox_namespace_mode_name(pod.net), sandbox_namespace_mode_name(pod.ipc),
        sandbox_namespace_mode_name(pod.pid), (int)form, sandbox_namespace_mode_name(ctr.net),
        sandbox_namespace_mode_name(ctr.ipc), sandbox_namespace_mode_name(ctr.pid));
    struct error *err = NULL;
    json_t *spec = oci_spec_build(&f.in, &err);
    if (!spec)
        fail_msg("%s: %s", what, err->msg);
    bool host_net = pod.net == NODE, host_ipc = pod.ipc == NODE;
    expect_ns(spec, "network", host_net ? NS_ABSENT : netns, what);
    expect_ns(spec, "uts", host_net ? NS_ABSENT : utsns, what);
    expect_ns(spec, "ipc", host_ipc ? NS_ABSENT : ipcns, what);
    const char *want_pid = podpid;
    if (ctr.pid == CONTAINER || (ctr.pid != TARGET && pod.pid == CONTAINER))
        want_pid = NS_FRESH;
    else if (ctr.pid == TARGET)
        want_pid = target;
    else if (pod.pid == NODE)
        want_pid = NS_ABSENT;
    expect_ns(spec, "pid", want_pid, what);
    expect_ns(spec, "mount", NS_FRESH, what);
    const char *shm = jstr(find_mount(spec, "/dev/shm"), "source");
    if (strcmp(shm, host_ipc ? "/dev/shm" : tpath_at("sandbox/shm")) != 0)
        fail_msg("%s: /dev/shm from %s", what, shm);
    json_decref(spec);
    fx_clear(&f);
}

/*
 * Every pod mode against every container mode: POD and NODE in a container
 * mean what the pod has (containerd's rule), pid CONTAINER is a new
 * namespace, TARGET the target's; UTS follows the network namespace and
 * /dev/shm the IPC namespace. No options at all mean POD everywhere.
 */
static void test_namespace_modes(void **state)
{
    const Runtime__V1__NamespaceMode net_ipc[] = {POD, NODE}, pod_pid[] = {POD, CONTAINER, NODE},
                                     ctr_pid[] = {POD, CONTAINER, NODE, TARGET};
    size_t cases = 0;
    for (size_t pn = 0; pn < 2; pn++)
        for (size_t pi = 0; pi < 2; pi++)
            for (size_t pp = 0; pp < ARRAY_SIZE(pod_pid); pp++) {
                struct modes pod = {net_ipc[pn], net_ipc[pi], pod_pid[pp]};
                for (int form = CTR_NO_LINUX; form < CTR_NSO; form++, cases++)
                    check_modes(pod, (enum ctr_form)form, pod);
                for (size_t k = 0; k < 2 * 2 * ARRAY_SIZE(ctr_pid); k++, cases++) {
                    struct modes ctr = {net_ipc[k % 2], net_ipc[k / 2 % 2], ctr_pid[k / 4]};
                    check_modes(pod, CTR_NSO, ctr);
                }
            }
    assert_int_equal(cases, 2 * 2 * 3 * (3 + 2 * 2 * 4));
}

/*
 * The reported case: a host-network pod and a container with `linux: {}`.
 * It gets the host's network and UTS namespaces, the pod's IPC namespace,
 * and HOSTNAME is the node's name (kubelet sends no hostname for such pods).
 */
static void test_golden_host_network(void **state)
{
    struct fx f;
    fx_init(&f);
    fx_pod_modes(&f, RUNTIME__V1__NAMESPACE_MODE__NODE, RUNTIME__V1__NAMESPACE_MODE__POD,
                 RUNTIME__V1__NAMESPACE_MODE__CONTAINER);
    f.pod.hostname = S("");
    f.lc.security_context = NULL;
    _cleanup_json_ json_t *spec = build_ok(&f);
    check_golden(spec, "host_network");
    expect_ns(spec, "network", NS_ABSENT, "host network");
    expect_ns(spec, "uts", NS_ABSENT, "host network");
    expect_ns(spec, "pid", NS_FRESH, "host network");
    assert_true(array_has_str(jget(spec, "process.env"), "HOSTNAME=node-1"));
    fx_clear(&f);
}

static void test_cgroups_path(void **state)
{
    static const struct {
        const char *parent;
        bool systemd;
        const char *want;
    } cases[] = {
        {"/kubepods/burstable/podx", false, "/kubepods/burstable/podx/id1"},
        {"kubepods/podx/", false, "/kubepods/podx/id1"},
        {"", false, "/tinycri/id1"},
        {NULL, false, "/tinycri/id1"},
        {"/", false, "/id1"},
        {"/kubepods.slice/kubepods-pod1.slice", true, "kubepods-pod1.slice:tinycri:id1"},
        {"kubepods-pod1.slice", true, "kubepods-pod1.slice:tinycri:id1"},
        {"", true, "system.slice:tinycri:id1"},
        {"/kubepods/../etc", false, NULL},
        {"/kubepods/podx", true, NULL},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        struct error *err = NULL;
        _cleanup_free_ char *p =
            oci_spec_cgroups_path(cases[i].parent, "id1", cases[i].systemd, &err);
        if (!cases[i].want) {
            assert_null(p);
            assert_int_equal(err->grpc_code, GRPC_INVALID_ARGUMENT);
            error_free(err);
        } else {
            if (!p)
                fail_msg("case %zu: %s", i, err->msg);
            assert_string_equal(p, cases[i].want);
        }
    }
}

static void test_resources_edges(void **state)
{
    struct fx f;
    fx_init(&f);
    f.lc.resources = &f.res;
    f.res.oom_score_adj = -997; /* Guaranteed pods: left to the parent's score */
    f.res.memory_limit_in_bytes = 8 << 20;
    f.res.memory_swap_limit_in_bytes = 16 << 20;
    json_t *spec = build_ok(&f);
    assert_null(jget(spec, "process.oomScoreAdj"));
    assert_int_equal(json_integer_value(jget(spec, "linux.resources.memory.swap")), 16 << 20);
    assert_null(jget(spec, "linux.resources.cpu"));
    json_decref(spec);
    f.res.oom_score_adj = 0;
    spec = build_ok(&f);
    assert_int_equal(json_integer_value(jget(spec, "process.oomScoreAdj")), 0);
    json_decref(spec);
    f.res.oom_score_adj = 1001;
    expect_fail(&f, GRPC_INVALID_ARGUMENT, "oom_score_adj");
    f.res.oom_score_adj = 0;
    f.res.cpuset_cpus = S("0-1;rm");
    expect_fail(&f, GRPC_INVALID_ARGUMENT, "cpuset");
    f.res.cpuset_cpus = S("");
    f.res.cpu_shares = -2;
    expect_fail(&f, GRPC_INVALID_ARGUMENT, "cpu_shares");
    fx_clear(&f);
}

/*
 * Values the kernel or the runtime would refuse only once the container's
 * cgroups exist are refused up front, naming the field (issue 11).
 */
static void test_resources_refused_up_front(void **state)
{
    struct fx f;
    fx_init(&f);
    f.lc.resources = &f.res;
    f.in.host.n_cpus = 4;
    f.in.host.cgroup_v2 = OCI_SPEC_NO;

    f.res.cpu_period = 1;
    expect_fail(&f, GRPC_INVALID_ARGUMENT, "cpu_period 1 is outside");
    f.res.cpu_period = 1000001;
    expect_fail(&f, GRPC_INVALID_ARGUMENT, "cpu_period");
    f.res.cpu_period = 100000;
    f.res.cpu_quota = -5;
    expect_fail(&f, GRPC_INVALID_ARGUMENT, "cpu_quota -5 must be");
    f.res.cpu_quota = 999;
    expect_fail(&f, GRPC_INVALID_ARGUMENT, "cpu_quota");
    f.res.cpu_quota = -1; /* no limit */
    json_t *spec = build_ok(&f);
    assert_int_equal(json_integer_value(jget(spec, "linux.resources.cpu.quota")), -1);
    assert_int_equal(json_integer_value(jget(spec, "linux.resources.cpu.period")), 100000);
    json_decref(spec);

    f.res.memory_limit_in_bytes = 1;
    expect_fail(&f, GRPC_INVALID_ARGUMENT, "memory_limit_in_bytes 1 is below the minimum");
    f.res.memory_limit_in_bytes = 6 << 20;
    json_decref(build_ok(&f));

    f.res.cpuset_cpus = S("999");
    expect_fail(&f, GRPC_INVALID_ARGUMENT,
                "cpuset_cpus \"999\" names CPU 999; this host has CPUs 0-3");
    f.res.cpuset_cpus = S("0,2-4");
    expect_fail(&f, GRPC_INVALID_ARGUMENT, "names CPU 4");
    f.res.cpuset_cpus = S("3-1");
    expect_fail(&f, GRPC_INVALID_ARGUMENT, "cpuset_cpus");
    f.res.cpuset_cpus = S("0,2-3");
    spec = build_ok(&f);
    assert_string_equal(json_string_value(jget(spec, "linux.resources.cpu.cpus")), "0,2-3");
    json_decref(spec);

    static Runtime__V1__LinuxContainerResources__UnifiedEntry u =
        RUNTIME__V1__LINUX_CONTAINER_RESOURCES__UNIFIED_ENTRY__INIT;
    static Runtime__V1__LinuxContainerResources__UnifiedEntry *us[] = {&u};
    u.key = S("memory.high");
    u.value = S("100000000");
    f.res.unified = us;
    f.res.n_unified = 1;
    expect_fail(&f, GRPC_INVALID_ARGUMENT, "unified resources need cgroup v2");
    f.in.host.cgroup_v2 = OCI_SPEC_YES;
    spec = build_ok(&f);
    assert_string_equal(
        json_string_value(json_object_get(jget(spec, "linux.resources.unified"), "memory.high")),
        "100000000");
    json_decref(spec);
    fx_clear(&f);
}

static void test_devices_errors(void **state)
{
    struct fx f;
    fx_init(&f);
    static Runtime__V1__Device d = RUNTIME__V1__DEVICE__INIT;
    d.host_path = S(fx_path(&f, "dev/missing"));
    d.permissions = S("rwm");
    static Runtime__V1__Device *devs[] = {&d};
    f.ctr.devices = devs;
    f.ctr.n_devices = 1;
    expect_fail(&f, GRPC_INVALID_ARGUMENT, "dev/missing");
    d.host_path = S(fx_path(&f, "dev/README"));
    expect_fail(&f, GRPC_INVALID_ARGUMENT, "not a device");
    d.host_path = S("/dev/null");
    d.permissions = S("rwx");
    expect_fail(&f, GRPC_INVALID_ARGUMENT, "permissions");
    d.permissions = S("");
    json_t *spec = build_ok(&f); /* defaults to rwm, container path = host path */
    assert_string_equal(jstr(spec, "linux.devices.0.path"), "/dev/null");
    const json_t *rules = jget(spec, "linux.resources.devices");
    assert_string_equal(jstr(rules, "0.access"), "rwm");
    assert_false(json_is_true(jget(rules, "0.allow")));
    const json_t *last = json_array_get(rules, json_array_size(rules) - 1);
    assert_string_equal(jstr(last, "access"), "rwm");
    assert_int_equal(json_integer_value(jget(last, "major")), 1);
    json_decref(spec);
    f.ctr.n_devices = 0;
    static Runtime__V1__CDIDevice cdi = RUNTIME__V1__CDIDEVICE__INIT;
    static Runtime__V1__CDIDevice *cdis[] = {&cdi};
    f.ctr.cdi_devices = cdis;
    f.ctr.n_cdi_devices = 1;
    expect_fail(&f, GRPC_UNIMPLEMENTED, "CDI");
    fx_clear(&f);
}

static void expect_path_lists(struct fx *f, size_t masked, size_t readonly)
{
    json_t *spec = build_ok(f);
    assert_int_equal(json_array_size(jget(spec, "linux.maskedPaths")), masked);
    assert_int_equal(json_array_size(jget(spec, "linux.readonlyPaths")), readonly);
    json_decref(spec);
}

/*
 * Masked and read-only paths are the CRI lists as sent (kubelet: the defaults
 * for procMount Default, empty lists for Unmasked); only a container without
 * any security context gets the defaults unasked.
 */
static void test_masked_paths_from_cri(void **state)
{
    struct fx f;
    fx_init(&f);
    expect_path_lists(&f, 11, 5); /* Default */
    static char *masked[] = {S("/proc/kcore")};
    f.sc.masked_paths = masked;
    f.sc.n_masked_paths = 1;
    expect_path_lists(&f, 1, 5);
    /* Unmasked: kubelet sends both lists empty. */
    f.sc.n_masked_paths = 0;
    f.sc.n_readonly_paths = 0;
    json_t *spec = build_ok(&f);
    assert_true(json_is_array(jget(spec, "linux.maskedPaths")));
    assert_int_equal(json_array_size(jget(spec, "linux.maskedPaths")), 0);
    assert_int_equal(json_array_size(jget(spec, "linux.readonlyPaths")), 0);
    json_decref(spec);
    /* No security context at all (linux: {}, or no linux): the defaults. */
    f.lc.security_context = NULL;
    expect_path_lists(&f, 11, 5);
    spec = build_ok(&f);
    assert_true(array_has_str(jget(spec, "linux.maskedPaths"), "/proc/kcore"));
    assert_true(array_has_str(jget(spec, "linux.readonlyPaths"), "/proc/sys"));
    json_decref(spec);
    f.ctr.linux = NULL;
    expect_path_lists(&f, 11, 5);
    f.ctr.linux = &f.lc;
    f.lc.security_context = &f.sc;

    static char *bad[] = {S("proc/kcore")};
    f.sc.masked_paths = bad;
    f.sc.n_masked_paths = 1;
    expect_fail(&f, GRPC_INVALID_ARGUMENT,
                "linux.security_context.masked_paths[0]: \"proc/kcore\"");
    f.sc.n_masked_paths = 0;
    static char *bad_ro[] = {S("/proc/sys"), S("/proc/../etc")};
    f.sc.readonly_paths = bad_ro;
    f.sc.n_readonly_paths = 2;
    expect_fail(&f, GRPC_INVALID_ARGUMENT, "linux.security_context.readonly_paths[1]");
    static char *empty[] = {S("")};
    f.sc.readonly_paths = empty;
    f.sc.n_readonly_paths = 1;
    expect_fail(&f, GRPC_INVALID_ARGUMENT, "readonly_paths[0]");
    /* Privileged: none, whatever was sent. */
    f.sc.n_readonly_paths = 0;
    f.sc.masked_paths = kubelet_masked;
    f.sc.n_masked_paths = ARRAY_SIZE(kubelet_masked);
    f.sc.privileged = true;
    f.psc.privileged = true;
    spec = build_ok(&f);
    assert_null(jget(spec, "linux.maskedPaths"));
    assert_null(jget(spec, "linux.readonlyPaths"));
    json_decref(spec);
    fx_clear(&f);
}

/* ------------------------------------------------------------------------ */
/* Seccomp                                                                  */

static bool rule_names(const json_t *profile, const char *name, const char *op)
{
    size_t i;
    const json_t *r;
    json_array_foreach(json_object_get(profile, "syscalls"), i, r)
    {
        if (!array_has_str(json_object_get(r, "names"), name))
            continue;
        const char *rop = jstr(r, "args.0.op");
        if ((!op && !rop) || (op && rop && strcmp(op, rop) == 0))
            return true;
    }
    return false;
}

static void test_apparmor(void **state)
{
    struct fx f;
    fx_init(&f);
    static Runtime__V1__SecurityProfile aa = RUNTIME__V1__SECURITY_PROFILE__INIT;
    f.sc.apparmor = &aa;
    /* No AppArmor on the host: a profile fails the create, as containerd has it. */
    f.in.host.apparmor = OCI_SPEC_NO;
    aa.profile_type = RUNTIME__V1__SECURITY_PROFILE__PROFILE_TYPE__Localhost;
    aa.localhost_ref = S("k8s-apparmor-example");
    expect_fail(&f, GRPC_FAILED_PRECONDITION, "apparmor is not supported");
    aa.profile_type = RUNTIME__V1__SECURITY_PROFILE__PROFILE_TYPE__RuntimeDefault;
    aa.localhost_ref = S("");
    expect_fail(&f, GRPC_FAILED_PRECONDITION, "apparmor is not supported");
    aa.profile_type = RUNTIME__V1__SECURITY_PROFILE__PROFILE_TYPE__Unconfined;
    json_t *spec = build_ok(&f);
    assert_null(json_object_get(json_object_get(spec, "process"), "apparmorProfile"));
    json_decref(spec);
    /* Names are checked first, whatever the host. */
    aa.profile_type = RUNTIME__V1__SECURITY_PROFILE__PROFILE_TYPE__Localhost;
    const char *bad[] = {"../x", "a/../b", "", "two words", "x\ny", "./x"};
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        aa.localhost_ref = S(bad[i]);
        expect_fail(&f, GRPC_INVALID_ARGUMENT, "AppArmor profile name");
    }
    f.sc.apparmor = NULL;
    f.sc.apparmor_profile = S("localhost/../x");
    expect_fail(&f, GRPC_INVALID_ARGUMENT, "AppArmor profile name");
    f.sc.apparmor_profile = S("bogus");
    expect_fail(&f, GRPC_INVALID_ARGUMENT, "invalid apparmor_profile");
    f.sc.apparmor_profile = S("localhost/k8s-x");
    expect_fail(&f, GRPC_FAILED_PRECONDITION, "apparmor is not supported");

    /* With AppArmor: the Localhost profile is the process's; no default profile exists. */
    f.in.host.apparmor = OCI_SPEC_YES;
    spec = build_ok(&f);
    assert_string_equal(jstr(spec, "process.apparmorProfile"), "k8s-x");
    json_decref(spec);
    f.sc.apparmor_profile = S("runtime/default");
    expect_fail(&f, GRPC_FAILED_PRECONDITION, "RuntimeDefault AppArmor profile is not supported");
    f.sc.apparmor_profile = S("");
    spec = build_ok(&f);
    assert_null(json_object_get(json_object_get(spec, "process"), "apparmorProfile"));
    json_decref(spec);
    fx_clear(&f);
}

static void test_selinux_options(void **state)
{
    struct fx f;
    fx_init(&f);
    static Runtime__V1__SELinuxOption se = RUNTIME__V1__SELINUX_OPTION__INIT;
    f.sc.selinux_options = &se;
    /* Empty options are no options. */
    json_decref(build_ok(&f));
    se.level = S("s0:c123,c456");
    f.in.host.selinux = OCI_SPEC_NO;
    expect_fail(&f, GRPC_FAILED_PRECONDITION, "selinux is not supported");
    f.in.host.selinux = OCI_SPEC_YES;
    expect_fail(&f, GRPC_FAILED_PRECONDITION, "SELinux labels (selinux_options) are not supported");
    se.type = S("a:b");
    expect_fail(&f, GRPC_INVALID_ARGUMENT, "selinux_options.type is malformed");
    se.type = S("");
    se.user = S("u\n");
    expect_fail(&f, GRPC_INVALID_ARGUMENT, "selinux_options.user is malformed");
    fx_clear(&f);
}

static void test_seccomp_default_profile(void **state)
{
    size_t i;
    const json_t *r;
    _cleanup_json_ json_t *p = seccomp_default_profile(0, SECCOMP_ARCH_X86_64);
    assert_string_equal(jstr(p, "defaultAction"), "SCMP_ACT_ERRNO");
    assert_int_equal(json_integer_value(jget(p, "defaultErrnoRet")), EPERM);
    assert_string_equal(jstr(p, "architectures.0"), "SCMP_ARCH_X86_64");
    assert_string_equal(jstr(p, "architectures.1"), "SCMP_ARCH_X86");
    assert_string_equal(jstr(p, "architectures.2"), "SCMP_ARCH_X32");
    assert_true(rule_names(p, "read", NULL));
    assert_true(rule_names(p, "arch_prctl", NULL));
    assert_false(rule_names(p, "set_tls", NULL));
    assert_true(rule_names(p, "personality", "SCMP_CMP_EQ"));
    assert_false(rule_names(p, "personality", NULL));
    assert_false(rule_names(p, "mount", NULL));
    assert_false(rule_names(p, "unshare", NULL));
    assert_false(rule_names(p, "clone", NULL));
    assert_true(rule_names(p, "clone", "SCMP_CMP_MASKED_EQ"));
    assert_false(rule_names(p, "kcmp", NULL));
    assert_false(rule_names(p, "reboot", NULL));
    /* socket(): every family but AF_ALG (38) and AF_VSOCK (40). */
    assert_false(rule_names(p, "socket", NULL));
    assert_true(rule_names(p, "socket", "SCMP_CMP_LT"));
    assert_true(rule_names(p, "socket", "SCMP_CMP_EQ"));
    assert_true(rule_names(p, "socket", "SCMP_CMP_GT"));
    for (uint64_t fam = 0; fam < 64; fam++) {
        bool allowed = false;
        json_array_foreach(json_object_get(p, "syscalls"), i, r)
        {
            if (!array_has_str(json_object_get(r, "names"), "socket"))
                continue;
            const char *op = jstr(r, "args.0.op");
            uint64_t v = (uint64_t)json_integer_value(jget(r, "args.0.value"));
            allowed |= (strcmp(op, "SCMP_CMP_LT") == 0 && fam < v) ||
                       (strcmp(op, "SCMP_CMP_EQ") == 0 && fam == v) ||
                       (strcmp(op, "SCMP_CMP_GT") == 0 && fam > v);
        }
        assert_int_equal(allowed, fam != 38 && fam != 40);
    }
    assert_string_equal(jstr(p, "syscalls.0.names.0"), "accept");
    /* clone3 must fail with ENOSYS (not EPERM) so libc falls back to clone. */
    bool clone3_enosys = false;
    json_array_foreach(json_object_get(p, "syscalls"), i, r)
    {
        if (array_has_str(json_object_get(r, "names"), "clone3") &&
            strcmp(jstr(r, "action"), "SCMP_ACT_ERRNO") == 0 &&
            json_integer_value(json_object_get(r, "errnoRet")) == ENOSYS)
            clone3_enosys = true;
    }
    assert_true(clone3_enosys);
    /* The clone mask is every CLONE_NEW* flag. */
    json_array_foreach(json_object_get(p, "syscalls"), i, r)
    {
        if (array_has_str(json_object_get(r, "names"), "clone") && jget(r, "args"))
            assert_int_equal(json_integer_value(jget(r, "args.0.value")), 2114060288);
    }

    _cleanup_json_ json_t *admin =
        seccomp_default_profile(CAPBIT(21) | CAPBIT(19), SECCOMP_ARCH_X86_64);
    assert_true(rule_names(admin, "mount", NULL));
    assert_true(rule_names(admin, "umount2", NULL));
    assert_true(rule_names(admin, "unshare", NULL));
    assert_true(rule_names(admin, "setns", NULL));
    assert_true(rule_names(admin, "clone", NULL));
    assert_true(rule_names(admin, "clone3", NULL));
    assert_false(rule_names(admin, "clone", "SCMP_CMP_MASKED_EQ"));
    assert_true(rule_names(admin, "kcmp", NULL));
    assert_true(rule_names(admin, "pidfd_getfd", NULL));
    assert_false(rule_names(admin, "reboot", NULL));

    _cleanup_json_ json_t *arm = seccomp_default_profile(0, SECCOMP_ARCH_AARCH64);
    assert_string_equal(jstr(arm, "architectures.0"), "SCMP_ARCH_AARCH64");
    assert_string_equal(jstr(arm, "architectures.1"), "SCMP_ARCH_ARM");
    assert_true(rule_names(arm, "set_tls", NULL));
    assert_false(rule_names(arm, "arch_prctl", NULL));
    assert_false(rule_names(arm, "modify_ldt", NULL));

    _cleanup_json_ json_t *s390 = seccomp_default_profile(0, SECCOMP_ARCH_S390X);
    json_array_foreach(json_object_get(s390, "syscalls"), i, r)
    {
        if (array_has_str(json_object_get(r, "names"), "clone") && jget(r, "args"))
            assert_int_equal(json_integer_value(jget(r, "args.0.index")), 1);
    }

    _cleanup_json_ json_t *native = seccomp_default_profile(0, SECCOMP_ARCH_NATIVE);
    assert_non_null(jget(native, "syscalls"));
    assert_int_not_equal(seccomp_native_arch(), SECCOMP_ARCH_NATIVE);
}

static void test_seccomp_choices(void **state)
{
    struct fx f;
    fx_init(&f);
    /* Unset: Unconfined, as kubelet's default. */
    json_t *spec = build_ok(&f);
    assert_null(jget(spec, "linux.seccomp"));
    json_decref(spec);

    /* RuntimeDefault follows the capabilities. */
    f.sc.seccomp = &f.seccomp;
    static char *add[] = {S("SYS_ADMIN")};
    f.caps.add_capabilities = add;
    f.caps.n_add_capabilities = 1;
    f.sc.capabilities = &f.caps;
    spec = build_ok(&f);
    assert_true(rule_names(jget(spec, "linux.seccomp"), "mount", NULL));
    json_decref(spec);
    f.sc.capabilities = NULL;

    f.seccomp.profile_type = RUNTIME__V1__SECURITY_PROFILE__PROFILE_TYPE__Unconfined;
    spec = build_ok(&f);
    assert_null(jget(spec, "linux.seccomp"));
    json_decref(spec);
    f.seccomp.localhost_ref = S("/x.json");
    expect_fail(&f, GRPC_INVALID_ARGUMENT, "localhost_ref");

    /* Localhost: copied, OCI fields only, Docker's "name" turned into "names". */
    f.seccomp.profile_type = RUNTIME__V1__SECURITY_PROFILE__PROFILE_TYPE__Localhost;
    f.seccomp.localhost_ref = S(fx_path(&f, "seccomp/profile.json"));
    spec = build_ok(&f);
    const json_t *p = jget(spec, "linux.seccomp");
    assert_string_equal(jstr(p, "defaultAction"), "SCMP_ACT_ERRNO");
    assert_null(jget(p, "archMap"));
    assert_null(jget(p, "syscalls.0.comment"));
    assert_string_equal(jstr(p, "syscalls.1.names.0"), "exit");
    json_decref(spec);

    f.seccomp.localhost_ref = S(fx_path(&f, "seccomp/missing.json"));
    expect_fail(&f, GRPC_INVALID_ARGUMENT, "missing.json");
    f.seccomp.localhost_ref = S(fx_path(&f, "seccomp/bad.json"));
    expect_fail(&f, GRPC_INVALID_ARGUMENT, "invalid JSON");
    f.seccomp.localhost_ref = S(fx_path(&f, "seccomp/noaction.json"));
    expect_fail(&f, GRPC_INVALID_ARGUMENT, "defaultAction");
    f.seccomp.localhost_ref = S(fx_path(&f, "outside.json"));
    expect_fail(&f, GRPC_INVALID_ARGUMENT, "outside");
    f.seccomp.localhost_ref = S(fx_path(&f, "seccomp/escape.json")); /* symlink out */
    expect_fail(&f, GRPC_INVALID_ARGUMENT, "outside");
    f.seccomp.localhost_ref = S("seccomp/profile.json");
    expect_fail(&f, GRPC_INVALID_ARGUMENT, "absolute");
    f.seccomp.localhost_ref = S(fx_path(&f, "seccomp/dir"));
    expect_fail(&f, GRPC_INVALID_ARGUMENT, "not a regular file");
    f.seccomp.localhost_ref = S(fx_path(&f, "seccomp"));
    expect_fail(&f, GRPC_INVALID_ARGUMENT, "outside");
    /* Without a root, any absolute path. */
    f.in.seccomp_localhost_root = NULL;
    f.seccomp.localhost_ref = S(fx_path(&f, "outside.json"));
    spec = build_ok(&f);
    assert_string_equal(jstr(spec, "linux.seccomp.defaultAction"), "SCMP_ACT_ALLOW");
    json_decref(spec);

    /* The deprecated string form. */
    f.sc.seccomp = NULL;
    static const struct {
        const char *path;
        const char *action; /* NULL: no seccomp, "" : error */
    } legacy[] = {
        {"runtime/default", "SCMP_ACT_ERRNO"},
        {"docker/default", "SCMP_ACT_ERRNO"},
        {"unconfined", NULL},
        {"", NULL},
        {"bogus", ""},
    };
    for (size_t i = 0; i < ARRAY_SIZE(legacy); i++) {
        f.sc.seccomp_profile_path = S(legacy[i].path);
        if (legacy[i].action && !*legacy[i].action) {
            expect_fail(&f, GRPC_INVALID_ARGUMENT, "bogus");
            continue;
        }
        spec = build_ok(&f);
        if (legacy[i].action)
            assert_string_equal(jstr(spec, "linux.seccomp.defaultAction"), legacy[i].action);
        else
            assert_null(jget(spec, "linux.seccomp"));
        json_decref(spec);
    }
    _cleanup_free_ char *lh = xasprintf("localhost/%s", f.seccomp.localhost_ref);
    f.sc.seccomp_profile_path = lh;
    spec = build_ok(&f);
    assert_string_equal(jstr(spec, "linux.seccomp.defaultAction"), "SCMP_ACT_ALLOW");
    json_decref(spec);
    fx_clear(&f);
}

static void test_missing_inputs(void **state)
{
    struct fx f;
    fx_init(&f);
    struct error *err = NULL;
    assert_null(oci_spec_build(NULL, &err));
    assert_int_equal(err->grpc_code, GRPC_INTERNAL);
    error_clear(&err);
    f.in.rootfs = "relative";
    expect_fail(&f, GRPC_INTERNAL, "incomplete");
    f.in.rootfs = f.paths[0];
    f.cmeta.name = S("");
    expect_fail(&f, GRPC_INVALID_ARGUMENT, "name");
    fx_clear(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_minimal),
        cmocka_unit_test(test_golden_privileged),
        cmocka_unit_test(test_golden_full),
        cmocka_unit_test(test_golden_image_volumes),
        cmocka_unit_test(test_image_volume_list),
        cmocka_unit_test(test_args_table),
        cmocka_unit_test(test_no_command),
        cmocka_unit_test(test_user_resolution),
        cmocka_unit_test(test_user_no_passwd),
        cmocka_unit_test(test_user_symlinks_stay_in_rootfs),
        cmocka_unit_test_teardown(test_user_symlinks_portable_resolver, reset_test_hooks),
        cmocka_unit_test(test_user_file_too_big),
        cmocka_unit_test(test_user_from_security_context),
        cmocka_unit_test(test_env_and_cwd),
        cmocka_unit_test(test_bad_mount_host_path),
        cmocka_unit_test(test_mount_paths_checked),
        cmocka_unit_test(test_mount_propagation_needs_host_support),
        cmocka_unit_test(test_mount_over_dev),
        cmocka_unit_test(test_shm_without_sandbox_dir),
        cmocka_unit_test(test_volume_names),
        cmocka_unit_test(test_capabilities),
        cmocka_unit_test(test_privileged_needs_privileged_sandbox),
        cmocka_unit_test(test_namespaces),
        cmocka_unit_test(test_namespace_modes),
        cmocka_unit_test(test_golden_host_network),
        cmocka_unit_test(test_cgroups_path),
        cmocka_unit_test(test_resources_edges),
        cmocka_unit_test(test_resources_refused_up_front),
        cmocka_unit_test(test_devices_errors),
        cmocka_unit_test(test_masked_paths_from_cri),
        cmocka_unit_test(test_apparmor),
        cmocka_unit_test(test_selinux_options),
        cmocka_unit_test(test_seccomp_default_profile),
        cmocka_unit_test(test_seccomp_choices),
        cmocka_unit_test(test_missing_inputs),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
