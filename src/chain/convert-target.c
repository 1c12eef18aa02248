/*
 * convert-target.c - ic_image_convert(): copy or flatten a backing chain
 * into a new image (qemu-img convert): the refusals, the source and its
 * snapshot view (-l), and the target's creation and removal.
 *
 * Design notes:
 *  1. Refused before anything is created: a target that is the source or
 *     one of its backing files (same real path), -c for a format without
 *     compression, backing_file in -o (convert flattens).
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
 *
 * The behaviour followed is qemu-img.c's img_convert.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

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
    memcpy(o, opts, opts->version >= 2 ? sizeof(*o) : offsetof(ic_convert_options, cache));
    if (opts->version < 2 && opts->direct)
        o->cache = IC_CACHE_NONE;
    o->version = IC_CONVERT_OPTIONS_VERSION;
    return 0;
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
    ic_create_options co = IC_CREATE_OPTIONS_INIT;
    co.format = out_fmt;
    co.size = ic_image_size(src);
    co.size_set = true;
    co.options = opts->options;
    ret = ic_image_create(dst_path, &co, errp);
    if (ret < 0)
        goto out_src;

    ic_image *dst = NULL;
    ic_open_options dop = IC_OPEN_OPTIONS_INIT;
    dop.format = out_fmt;
    dop.flags = IC_OPEN_RDWR | IC_OPEN_NO_BACKING | IC_OPEN_STREAM;
    /* design note 3: -c keeps the default target in the page cache */
    dop.cache = opts->compress && opts->cache == IC_CACHE_DEFAULT ? IC_CACHE_WRITEBACK
                                                                  : opts->cache;
    ret = ic_image_open(&dst, dst_path, &dop, errp);
    if (ret == 0) {
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
