/*
 * test-io-lock.c - qemu-compatible image locking (src/io/io-lock.c) proved
 * against the real qemu-img / qemu-io 7.2 (the oracle).
 *
 * A qemu-io process holding an image (`-c 'sleep N'`) plays the running VM;
 * we wait until /proc/locks shows its bytes, then open the image ourselves.
 * The reverse direction runs qemu-img / qemu-io while we hold a descriptor.
 * Skipped when qemu-img or qemu-io is not installed.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"
#include "chain-fixture.h"

struct fixture {
    char *dir;
    char *img;
    pid_t qemu;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    cf_setup(NULL); /* the one test-folder fixture */
    f->dir = strdup(cf_dir);
    assert_non_null(f->dir);
    f->img = tu_path(f->dir, "vm disk.qcow2"); /* a space, to test quoting */
    *state = f;
    if (!tu_have_prog("qemu-img") || !tu_have_prog("qemu-io"))
        return 0;
    char *out;
    int rc = tu_sh_out(&out, "timeout 30 qemu-img create -f qcow2 '%s' 1M", f->img);
    if (rc != 0)
        print_error("qemu-img create: %s\n", out);
    free(out);
    return rc == 0 ? 0 : -1;
}

static void stop_qemu(struct fixture *f)
{
    if (f->qemu > 0) {
        kill(f->qemu, SIGKILL); /* the process this test started, by its pid */
        waitpid(f->qemu, NULL, 0);
        f->qemu = 0;
    }
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    stop_qemu(f);
    cf_teardown(NULL);
    free(f->dir);
    free(f->img);
    free(f);
    return 0;
}

static void need_qemu(void)
{
    if (!tu_have_prog("qemu-img") || !tu_have_prog("qemu-io"))
        skip();
}

/* Is byte @byte of @path's inode locked by anyone (per /proc/locks)? */
static bool byte_locked(const char *path, int byte)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return false;
    FILE *fp = fopen("/proc/locks", "r");
    if (!fp)
        return false;
    char line[256], want[64];
    /* "1: OFDLCK ADVISORY  READ -1 fe:00:10954105 100 101": adjacent
     * bytes of one owner merge into one range */
    snprintf(want, sizeof(want), ":%llu ", (unsigned long long)st.st_ino);
    bool found = false;
    while (!found && fgets(line, sizeof(line), fp)) {
        char *p = strstr(line, want);
        long lo, hi;
        if (p && sscanf(p + strlen(want), "%ld %ld", &lo, &hi) == 2)
            found = lo <= byte && byte <= hi;
    }
    fclose(fp);
    return found;
}

/* Starts `qemu-io -f qcow2 [-r] -c 'sleep 20000' IMG` and waits until it
 * holds @byte. */
static void start_qemu_io(struct fixture *f, bool read_only, int byte)
{
    char a0[] = "qemu-io", a1[] = "-f", a2[] = "qcow2", a3[] = "-c", a4[] = "sleep 20000",
         ro[] = "-r";
    char *argv[] = { a0, a1, a2, a3, a4, f->img, NULL, NULL };
    if (read_only) {
        argv[5] = ro;
        argv[6] = f->img;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    int rc = posix_spawnp(&f->qemu, "qemu-io", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    assert_int_equal(rc, 0);
    for (int i = 0; i < 1000; i++) { /* up to 10 s */
        if (byte_locked(f->img, byte))
            return;
        if (waitpid(f->qemu, NULL, WNOHANG) == f->qemu) {
            f->qemu = 0;
            fail_msg("qemu-io exited before locking %s", f->img);
        }
        struct timespec ts = { 0, 10 * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
    fail_msg("qemu-io did not lock byte %d of %s", byte, f->img);
}

/* Runs a qemu command on the image; returns its exit code, output in *out. */
static int qemu(char **out, struct fixture *f, const char *cmd)
{
    return tu_sh_out(out, "timeout 30 %s '%s'", cmd, f->img);
}

static void expect_qemu(struct fixture *f, const char *cmd, int rc, const char *msg)
{
    char *out;
    int got = qemu(&out, f, cmd);
    if (got != rc || (msg && !strstr(out, msg)))
        fail_msg("`%s` exited %d (want %d), output: %s (want \"%s\")", cmd, got, rc, out,
                 msg ? msg : "");
    free(out);
}

static void test_io_lock__qemu_writer_makes_our_writer_fail_with_ebusy_naming_the_file(void **state)
{
    struct fixture *f = *state;
    need_qemu();
    start_qemu_io(f, false, 101);
    ic_io *io = NULL;
    ic_error *err = NULL;
    int ret = ic_io_open_file(&io, f->img, IC_IO_RDWR, &err);
    assert_int_equal(ic_error_kind_of(err), IC_ERR_BUSY);
    assert_non_null(strstr(ic_error_message(err), f->img));
    TU_ASSERT_ERR(ret, err, EBUSY, "failed to get \"write\" lock");
    assert_null(io);
    /* the aio backend refuses the same way */
    ret = ic_io_open_aio(&io, f->img, IC_IO_RDWR, &err);
    TU_ASSERT_ERR(ret, err, EBUSY, "failed to get \"write\" lock");
    /* image-level open */
    ic_image *img = NULL;
    ic_open_options o = IC_OPEN_OPTIONS_INIT;
    o.flags = IC_OPEN_RDWR;
    ret = ic_image_open(&img, f->img, &o, &err);
    assert_int_equal(ic_error_kind_of(err), IC_ERR_BUSY);
    TU_ASSERT_ERR(ret, err, EBUSY, "vm disk.qcow2");
}

static void test_io_lock__qemu_writer_makes_our_reader_fail_like_qemu_img_info(void **state)
{
    struct fixture *f = *state;
    need_qemu();
    start_qemu_io(f, false, 101);
    /* the oracle: qemu's own reader is refused */
    expect_qemu(f, "qemu-img info", 1, "Failed to get shared \"write\" lock");
    ic_io *io = NULL;
    ic_error *err = NULL;
    int ret = ic_io_open_file(&io, f->img, 0, &err);
    assert_non_null(strstr(ic_error_message(err), f->img));
    TU_ASSERT_ERR(ret, err, EBUSY, "failed to get shared \"write\" lock");
}

static void test_io_lock__force_share_reads_an_image_a_qemu_writer_holds(void **state)
{
    struct fixture *f = *state;
    need_qemu();
    start_qemu_io(f, false, 101);
    expect_qemu(f, "qemu-img info -U", 0, "file format: qcow2");
    ic_io *io = NULL;
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_io_open_file(&io, f->img, IC_IO_SHARE, &err), err);
    uint8_t magic[4];
    assert_int_equal(ic_io_pread(io, magic, 4, 0), 0);
    assert_memory_equal(magic, "QFI\xfb", 4);
    ic_io_close(io);
}

static void test_io_lock__qemu_reader_shares_with_our_reader_but_refuses_our_writer(void **state)
{
    struct fixture *f = *state;
    need_qemu();
    start_qemu_io(f, true, 100);
    ic_io *io = NULL;
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_io_open_file(&io, f->img, 0, &err), err);
    ic_io_close(io);
    int ret = ic_io_open_file(&io, f->img, IC_IO_RDWR, &err);
    TU_ASSERT_ERR(ret, err, EBUSY, "failed to get \"write\" lock");
}

static void test_io_lock__our_writer_makes_qemu_img_and_qemu_io_fail(void **state)
{
    struct fixture *f = *state;
    need_qemu();
    ic_io *io = NULL;
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_io_open_file(&io, f->img, IC_IO_RDWR, &err), err);
    expect_qemu(f, "qemu-img info", 1, "Failed to get shared \"write\" lock");
    expect_qemu(f, "qemu-io -f qcow2 -c 'write 0 512'", 1, "Failed to get \"write\" lock");
    expect_qemu(f, "qemu-io -f qcow2 -r -c 'read 0 512'", 1, "Failed to get shared \"write\" lock");
    expect_qemu(f, "qemu-img info -U", 0, "file format: qcow2");
    ic_io_close(io);
    /* closing releases everything */
    expect_qemu(f, "qemu-io -f qcow2 -c 'write 0 512'", 0, "wrote 512/512 bytes");
}

static void test_io_lock__our_reader_shares_with_qemu_img_info_but_refuses_qemu_writes(void **state)
{
    struct fixture *f = *state;
    need_qemu();
    ic_io *io = NULL;
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_io_open_file(&io, f->img, 0, &err), err);
    expect_qemu(f, "qemu-img info", 0, "file format: qcow2");
    expect_qemu(f, "qemu-io -f qcow2 -c 'write 0 512'", 1, "Failed to get \"write\" lock");
    ic_io_close(io);
}

static void test_io_lock__our_force_share_lets_a_qemu_writer_in(void **state)
{
    struct fixture *f = *state;
    need_qemu();
    ic_io *io = NULL;
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_io_open_file(&io, f->img, IC_IO_SHARE, &err), err);
    expect_qemu(f, "qemu-io -f qcow2 -c 'write 0 512'", 0, "wrote 512/512 bytes");
    ic_io_close(io);
}

static void test_io_lock__downgrade_and_upgrade_change_what_qemu_sees(void **state)
{
    struct fixture *f = *state;
    need_qemu();
    ic_io *io = NULL;
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_io_open_file(&io, f->img, IC_IO_RDWR, &err), err);
    expect_qemu(f, "qemu-img info", 1, "Failed to get shared \"write\" lock");
    TU_ASSERT_OK(ic_io_lock(io, IC_LOCK_SHARED, &err), err);
    assert_false(byte_locked(f->img, 101));
    expect_qemu(f, "qemu-img info", 0, "file format: qcow2");
    TU_ASSERT_OK(ic_io_lock(io, IC_LOCK_WRITE, &err), err);
    assert_true(byte_locked(f->img, 101));
    expect_qemu(f, "qemu-img info", 1, "Failed to get shared \"write\" lock");
    TU_ASSERT_OK(ic_io_lock(io, IC_LOCK_NONE, &err), err);
    assert_false(byte_locked(f->img, 100));
    expect_qemu(f, "qemu-io -f qcow2 -c 'write 0 512'", 0, "wrote 512/512 bytes");
    ic_io_close(io);
}

static void test_io_lock__failed_upgrade_keeps_the_previous_locks(void **state)
{
    struct fixture *f = *state;
    need_qemu();
    start_qemu_io(f, true, 100); /* a qemu reader denies write */
    ic_io *io = NULL;
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_io_open_file(&io, f->img, 0, &err), err);
    int ret = ic_io_lock(io, IC_LOCK_WRITE, &err);
    TU_ASSERT_ERR(ret, err, EBUSY, "failed to get \"write\" lock");
    /* still a reader: bytes 100/201/203 held, 101/103 not */
    stop_qemu(f);
    assert_true(byte_locked(f->img, 100));
    assert_true(byte_locked(f->img, 201));
    assert_false(byte_locked(f->img, 101));
    assert_false(byte_locked(f->img, 103));
    expect_qemu(f, "qemu-io -f qcow2 -c 'write 0 512'", 1, "Failed to get \"write\" lock");
    ic_io_close(io);
}

static void test_io_lock__locks_use_exactly_qemus_bytes(void **state)
{
    struct fixture *f = *state;
    need_qemu();
    static const int writer[] = { 100, 101, 103, 201, 203 };
    static const int reader[] = { 100, 201, 203 };
    ic_io *io = NULL;
    ic_error *err = NULL;
    TU_ASSERT_OK(ic_io_open_file(&io, f->img, IC_IO_RDWR, &err), err);
    for (size_t i = 0; i < IC_ARRAY_SIZE(writer); i++)
        assert_true(byte_locked(f->img, writer[i]));
    assert_false(byte_locked(f->img, 102));
    assert_false(byte_locked(f->img, 200));
    assert_false(byte_locked(f->img, 0)); /* libvirt's byte */
    ic_io_close(io);
    TU_ASSERT_OK(ic_io_open_file(&io, f->img, 0, &err), err);
    for (size_t i = 0; i < IC_ARRAY_SIZE(reader); i++)
        assert_true(byte_locked(f->img, reader[i]));
    assert_false(byte_locked(f->img, 101));
    ic_io_close(io);
    TU_ASSERT_OK(ic_io_open_file(&io, f->img, IC_IO_NOLOCK, &err), err);
    assert_false(byte_locked(f->img, 100));
    ic_io_close(io);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_io_lock__qemu_writer_makes_our_writer_fail_with_ebusy_naming_the_file),
        T(test_io_lock__qemu_writer_makes_our_reader_fail_like_qemu_img_info),
        T(test_io_lock__force_share_reads_an_image_a_qemu_writer_holds),
        T(test_io_lock__qemu_reader_shares_with_our_reader_but_refuses_our_writer),
        T(test_io_lock__our_writer_makes_qemu_img_and_qemu_io_fail),
        T(test_io_lock__our_reader_shares_with_qemu_img_info_but_refuses_qemu_writes),
        T(test_io_lock__our_force_share_lets_a_qemu_writer_in),
        T(test_io_lock__downgrade_and_upgrade_change_what_qemu_sees),
        T(test_io_lock__failed_upgrade_keeps_the_previous_locks),
        T(test_io_lock__locks_use_exactly_qemus_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
