/*
 * convert-target.c - ic_image_convert(): copy or flatten a backing chain
 * into a new image (qemu-img convert): the refusals, the source and its
 * snapshot view (-l), and the target's creation and removal.
 *
 * Design notes:
 *  1. Refused before anything is created: a target that is the source or
 *     one of its backing files (same real path), -c for a format without
 *     compression, backing_file in -o (use -B, note 6).
 *  2. The target is created with ic_image_create() (which validates the -o
 *     options before touching the file) and opened without its backing
 *     chain.  A target that did not exist before is removed if anything
 *     fails afterwards, so a failed convert leaves nothing behind.
 *  3. The target is opened by ic_image_open() as bulk output
 *     (IC_OPEN_STREAM) in the -t cache mode, which picks its backend
 *     (src/image/image-cache.c note 1): by default O_DIRECT where the file
 *     system has it.  With -c and the default mode the target is written
 *     through the streamed page cache (writeback), since compressed
 *     clusters are small unaligned writes that O_DIRECT would turn into
 *     read-modify-writes.
 *  4. The copy itself is chain-convert.c's; its extra readers open their
 *     own handles on the source here (open_more_source), with the same
 *     options and snapshot view.
 *  5. -n writes into an existing target instead (of -O's format, opened
 *     with its own backing chain left alone): it must be at least as large
 *     as the source; [0, source size) is first made to read as zeroes
 *     (ic_image_pwrite_zeroes, unmapping where it can), so the copy can
 *     skip zero runs as it does for a new image (qemu-img writes zeroes
 *     over those runs instead; the result reads the same, and the target
 *     past the source's size is left as it was).  A failed -n convert
 *     never removes the target.
 *  6. -B BACKING -F FMT makes the target an overlay of BACKING holding
 *     only what the source's top image allocates above its own backing
 *     file (qemu-img's rule); that single-layer copy is
 *     chain-convert-backing.c's.  Refused as qemu-img refuses them: no -F,
 *     a raw target; and -c with -B (not supported).
 *  7. With -t unsafe a target this convert created drops every flush,
 *     the ordering ones included (src/image/image-cache.c note 3): until
 *     the convert returns the file is incomplete, so a crash leaves it
 *     useless in any order.  An existing target (-n) keeps them.
 *
 * The behaviour followed is qemu-img convert's.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "chain-convert-backing.h"
#include "chain-convert.h"

/* Refuses a target that is the source or one of its backing files. */
static int check_not_source(struct ic_image *src, const char *dst, ic_error **errp)
{
    char *rdst = realpath(dst, NULL);
    if (!rdst)
        return 0; /* does not exist (yet): cannot be a source file */
    int ret = 0;
    for (struct ic_image *l = src; l && ret == 0; l = l->backing) {
        char *rl = realpath(l->filename, NULL);
        if (rl && !strcmp(rl, rdst))
            ret = ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                               "%s: the target is %s of the conversion", dst,
                               l == src ? "the source" : "a backing file");
        free(rl);
    }
    free(rdst);
    return ret;
}

/* convert flattens: a backing file in -o would make the target read
 * through to it (qemu-img -B semantics), which this engine does not do. */
static int refuse_backing_option(const char *options, const char *dst, ic_error **errp)
{
    ic_opts *o = NULL;
    int ret = ic_opts_parse(&o, options, errp);
    if (ret < 0) {
        ic_error_prepend(errp, "%s", dst);
        return ret;
    }
    const char *v;
    if (ic_opts_take_str(o, "backing_file", &v) > 0 || ic_opts_take_str(o, "backing_fmt", &v) > 0)
        ret = ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                           "%s: convert flattens the chain; the backing_file and backing_fmt "
                           "options are not supported", dst);
    ic_opts_free(o);
    return ret;
}

/* Opens the source chain read-only, with the snapshot view if asked. */
static int open_source(ic_image **out, const char *path, const ic_convert_options *opts,
                       ic_error **errp)
{
    ic_open_options so = IC_OPEN_OPTIONS_INIT;
    so.format = opts->src_format;
    so.flags = opts->force_share ? IC_OPEN_FORCE_SHARE : 0;
    so.cache = opts->src_cache;
    int ret = ic_image_open(out, path, &so, errp);
    if (ret < 0)
        return ret;
    if (opts->snapshot)
        ret = ic_image_snapshot_load_tmp(*out, opts->snapshot, NULL, true, errp);
    else if (opts->snapshot_id || opts->snapshot_name)
        ret = ic_image_snapshot_load_tmp(*out, opts->snapshot_id, opts->snapshot_name, false,
                                         errp);
    if (ret < 0) {
        ic_image_close(*out);
        *out = NULL;
    }
    return ret;
}

struct more_sources {
    const char *path;
    const ic_convert_options *opts;
    uint64_t size;
};

/* ic_copy_source_opener for ic_image_convert: the same file, options and snapshot
 * view; a source whose size changed meanwhile is refused. */
static int open_more_source(ic_image **out, void *payload, ic_error **errp)
{
    const struct more_sources *ms = payload;
    int ret = open_source(out, ms->path, ms->opts, errp);
    if (ret == 0 && ic_image_size(*out) != ms->size) {
        ic_image_close(*out);
        *out = NULL;
        ret = ic_error_set(errp, IC_ERR_IO, EAGAIN, "%s: changed while being converted",
                           ms->path);
    }
    return ret;
}

static bool format_compresses(const char *fmt)
{
    const struct ic_driver *drv = ic_driver_find(fmt);
    return drv && ic_driver_can_compress(drv);
}

/* The options of any version as the current struct (a version 1 struct
 * ends before the cache fields; its `direct` meant -t none). */
static int convert_options(ic_convert_options *o, const ic_convert_options *opts, ic_error **errp)
{
    static const ic_convert_options defaults = IC_CONVERT_OPTIONS_INIT;
    *o = defaults;
    if (!opts)
        return 0;
    if (opts->version < 1 || opts->version > IC_CONVERT_OPTIONS_VERSION)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "ic_image_convert: unknown options version %u", opts->version);
    memcpy(o, opts, opts->version >= 4   ? sizeof(*o)
                    : opts->version == 3 ? offsetof(ic_convert_options, copy_range)
                    : opts->version == 2 ? offsetof(ic_convert_options, rate_limit)
                                         : offsetof(ic_convert_options, cache));
    if (opts->version < 2 && opts->direct)
        o->cache = IC_CACHE_NONE;
    o->version = IC_CONVERT_OPTIONS_VERSION;
    return 0;
}

/* -n (design note 5): the existing target must hold the source, and
 * reads as zeroes over it before the copy, which then skips zero runs as
 * for a new image. */
static int convert_prepare_existing(ic_image *dst, uint64_t size, ic_error **errp)
{
    if (ic_image_size(dst) < size)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "%s: output file is smaller than "
                            "input file", ic_image_filename(dst));
    return ic_image_pwrite_zeroes(dst, 0, size, IC_ZERO_MAY_UNMAP, errp);
}

int ic_image_convert(const char *src_path, const char *dst_path, const ic_convert_options *vopts,
                     ic_error **errp)
{
    ic_convert_options ocur;
    int ret = convert_options(&ocur, vopts, errp);
    if (ret < 0)
        return ret;
    const ic_convert_options *opts = &ocur;
    if (!src_path || !*src_path || !dst_path || !*dst_path)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "ic_image_convert: no file name given");
    const char *out_fmt = opts->out_format ? opts->out_format : "raw";
    if (!ic_driver_find(out_fmt))
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "%s: unknown output format '%s'",
                            dst_path, out_fmt);
    if (opts->compress && !format_compresses(out_fmt))
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                            "%s: format %s does not support compression (-c)", dst_path, out_fmt);
    /* -C: qemu-img's refusals and words */
    if (opts->copy_range && opts->compress)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "%s: Cannot enable copy offloading when -c is used", dst_path);
    if (opts->copy_range && opts->sparse_size_set)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "%s: Cannot enable copy offloading when -S is used", dst_path);
    if (opts->copy_range && opts->salvage)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "%s: Cannot use copy offloading in salvaging mode", dst_path);
    if (opts->no_create && opts->options)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "%s: -o has no effect when skipping image creation", dst_path);
    if (opts->backing && !opts->no_create && !opts->backing_format)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "%s: Use of backing file requires explicit backing format", dst_path);
    if (opts->backing && ic_driver_find(out_fmt)->headerless)
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP, "%s: Backing file not supported "
                            "for file format '%s'", dst_path, out_fmt);
    if (opts->backing && opts->compress)
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP, "%s: -c with -B is not "
                            "supported", dst_path);
    ret = refuse_backing_option(opts->options, dst_path, errp);
    if (ret < 0)
        return ret;

    ic_image *src = NULL;
    ret = open_source(&src, src_path, opts, errp);
    if (ret < 0)
        return ret;
    if ((ret = check_not_source(src, dst_path, errp)) < 0)
        goto out_src;

    bool existed = ic_io_file_exists(dst_path);
    if (!opts->no_create) {
        ic_create_options co = IC_CREATE_OPTIONS_INIT;
        co.format = out_fmt;
        co.size = ic_image_size(src);
        co.size_set = true;
        co.options = opts->options;
        co.backing_file = opts->backing;
        co.backing_format = opts->backing_format;
        ret = ic_image_create(dst_path, &co, errp);
        if (ret < 0)
            goto out_src;
    }

    ic_image *dst = NULL;
    ic_open_options dop = IC_OPEN_OPTIONS_INIT;
    dop.format = out_fmt;
    /* -n, -B: the target keeps its chain, so its zero writes hide it */
    dop.flags = IC_OPEN_RDWR | IC_OPEN_STREAM |
                (opts->no_create || opts->backing ? 0 : IC_OPEN_NO_BACKING);
    /* design note 3: -c keeps the default target in the page cache */
    dop.cache = opts->compress && opts->cache == IC_CACHE_DEFAULT ? IC_CACHE_WRITEBACK
                                                                  : opts->cache;
    ret = ic_image_open(&dst, dst_path, &dop, errp);
    if (ret == 0 && !opts->no_create)
        ic_image_drop_flushes(dst); /* design note 7 */
    if (ret == 0 && opts->backing) {
        /* design note 6 */
        ret = ic_convert_top_into_overlay(src, dst, opts, errp);
        if (ret == 0)
            ret = ic_image_flush_final(dst, errp);
        int cret = ic_image_close(dst);
        if (ret == 0 && cret < 0)
            ret = ic_error_set(errp, ic_error_kind_from_errno(-cret), -cret,
                               "%s: closing the target failed: %s", dst_path, strerror(-cret));
        dst = NULL;
    } else if (ret == 0 && opts->no_create) {
        ret = convert_prepare_existing(dst, ic_image_size(src), errp);
    }
    if (ret == 0 && dst) {
        /* more readers open their own handles (design note 4) */
        struct more_sources ms = { src_path, opts, ic_image_size(src) };
        ret = ic_copy_image(dst, src, open_more_source, &ms, opts, NULL, errp);
        int cret = ic_image_close(dst);
        if (ret == 0 && cret < 0)
            ret = ic_error_set(errp, ic_error_kind_from_errno(-cret), -cret,
                               "%s: closing the target failed: %s", dst_path, strerror(-cret));
    }
    if (ret < 0 && !existed)
        ic_io_remove(dst_path);
out_src:
    ic_image_close(src);
    return ret;
}
