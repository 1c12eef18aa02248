/*
 * chain-check.c - ic_chain_check(): check every image of a chain and the
 * links between them.
 *
 * Design notes:
 *  1. What it owns: nothing on disk; it writes nothing.  It walks the chain
 *     itself, one header at a time (IC_OPEN_NO_BACKING | IC_OPEN_CHECK),
 *     instead of opening the chain as a whole, so that a broken link is
 *     reported as a finding with the images above it still checked, where
 *     ic_image_open would only refuse.
 *  2. Findings carry a kind, a severity, the image's depth and path, and a
 *     one-line message naming the file.  They are collected in the result
 *     and also passed to the caller's report callback as they are found.
 *  3. Severities: ERROR when the chain is broken or an image corrupt
 *     (missing/unreadable backing, loop, too deep, recorded format that the
 *     file does not have, corruptions, incomplete check, interrupted
 *     operation); WARNING when it works but is fragile (no recorded format,
 *     a raw-recorded file that probes as an image, an unrecorded format
 *     probed as raw, backing larger than its overlay, a relative name
 *     resolving to another file from the current folder, leaks, a stale
 *     journal); INFO for a relative name that does not resolve from the
 *     current folder at all, and an unrecorded format that probes as an
 *     image format (QED can record only "raw").
 *  4. Loops and the depth limit are the shared walker's
 *     (src/image/image-walk.c): real paths of every image reached, and
 *     max_depth in any case (qemu-img 7.2 recurses without bound on a
 *     loop).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chain-journal.h"
#include "io/io-dir.h"
#include "util/path.h"

/* Bytes read to probe a file's real format (the drivers' probe contract). */
#define IC_CHECK_PROBE_BYTES 4096u

struct cc {
    ic_chain_check_result *res;
    const ic_chain_check_options *o;
    size_t cap_f, cap_i;
    bool oom;
};

const char *ic_chain_problem_name(ic_chain_problem kind)
{
    switch (kind) {
    case IC_CHAIN_MISSING_BACKING: return "missing-backing";
    case IC_CHAIN_UNREADABLE: return "unreadable";
    case IC_CHAIN_LOOP: return "loop";
    case IC_CHAIN_TOO_DEEP: return "too-deep";
    case IC_CHAIN_FORMAT_MISMATCH: return "format-mismatch";
    case IC_CHAIN_FORMAT_UNRECORDED: return "format-unrecorded";
    case IC_CHAIN_BACKING_LARGER: return "backing-larger";
    case IC_CHAIN_RELATIVE_NAME: return "relative-name";
    case IC_CHAIN_IMAGE_CORRUPT: return "corrupt";
    case IC_CHAIN_IMAGE_LEAKS: return "leaks";
    case IC_CHAIN_CHECK_ERRORS: return "check-errors";
    case IC_CHAIN_INTERRUPTED: return "interrupted-operation";
    }
    return "unknown";
}

static void add_finding(struct cc *c, ic_chain_problem kind, ic_chain_severity sev,
                        unsigned depth, const char *file, const char *fmt, ...) IC_PRINTF(6, 7);

static void add_finding(struct cc *c, ic_chain_problem kind, ic_chain_severity sev,
                        unsigned depth, const char *file, const char *fmt, ...)
{
    ic_chain_check_result *r = c->res;
    if (r->nb_findings == c->cap_f) {
        size_t nc = c->cap_f ? c->cap_f * 2 : 8;
        ic_chain_finding *nf = realloc(r->findings, nc * sizeof(*nf));
        if (!nf) {
            c->oom = true;
            return;
        }
        r->findings = nf;
        c->cap_f = nc;
    }
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    ic_chain_finding f = { kind, sev, depth, strdup(file), strdup(msg) };
    if (!f.file || !f.message) {
        free(f.file);
        free(f.message);
        c->oom = true;
        return;
    }
    r->findings[r->nb_findings++] = f;
    if (sev == IC_CHAIN_ERROR)
        r->errors++;
    else if (sev == IC_CHAIN_WARNING)
        r->warnings++;
    else
        r->infos++;
    if (c->o->report)
        c->o->report(&f, c->o->payload);
}

static ic_chain_image_report *add_image(struct cc *c, const char *file)
{
    ic_chain_check_result *r = c->res;
    if (r->nb_images == c->cap_i) {
        size_t nc = c->cap_i ? c->cap_i * 2 : 4;
        ic_chain_image_report *ni = realloc(r->images, nc * sizeof(*ni));
        if (!ni) {
            c->oom = true;
            return NULL;
        }
        r->images = ni;
        c->cap_i = nc;
    }
    ic_chain_image_report *ir = &r->images[r->nb_images];
    memset(ir, 0, sizeof(*ir));
    if (!(ir->filename = strdup(file))) {
        c->oom = true;
        return NULL;
    }
    r->nb_images++;
    return ir;
}

void ic_chain_check_result_free(ic_chain_check_result *res)
{
    if (!res)
        return;
    for (size_t i = 0; i < res->nb_images; i++) {
        free(res->images[i].filename);
        free(res->images[i].format);
    }
    free(res->images);
    for (size_t i = 0; i < res->nb_findings; i++) {
        free(res->findings[i].file);
        free(res->findings[i].message);
    }
    free(res->findings);
    free(res);
}

/* Relative names that resolve differently from the current folder. */
static void check_relative(struct cc *c, unsigned depth, const char *cur, const char *name)
{
    if (ic_path_is_absolute(name))
        return;
    char *via_img = ic_path_resolve_backing(cur, name);
    if (!via_img) {
        c->oom = true;
        return;
    }
    char *rv = ic_dir_realpath(via_img);
    char *rc = ic_dir_realpath(name);
    if (rc && (!rv || strcmp(rv, rc)))
        add_finding(c, IC_CHAIN_RELATIVE_NAME, IC_CHAIN_WARNING, depth, cur,
                    "%s: relative backing name '%s' means %s from the image's folder but %s "
                    "from the current folder", cur, name, via_img, rc);
    else if (!rc && rv)
        add_finding(c, IC_CHAIN_RELATIVE_NAME, IC_CHAIN_INFO, depth, cur,
                    "%s: relative backing name '%s' resolves only from the image's folder (%s)",
                    cur, name, via_img);
    free(rv);
    free(rc);
    free(via_img);
}

static void check_journal(struct cc *c, unsigned depth, const char *cur)
{
    struct ic_journal_rec rec;
    bool stale = false;
    ic_error *err = NULL;
    int ret = ic_journal_load(&rec, &stale, cur, c->o->open_file, c->o->payload, &err);
    if (ret < 0) {
        add_finding(c, IC_CHAIN_INTERRUPTED, IC_CHAIN_ERROR, depth, cur,
                    "%s: journal of an unfinished operation cannot be read: %s", cur,
                    ic_error_message(err));
        ic_error_free(err);
    } else if (ret == 1) {
        if (rec.op == IC_JOURNAL_COMMIT)
            add_finding(c, IC_CHAIN_INTERRUPTED, IC_CHAIN_ERROR, depth, cur,
                        "%s: an interrupted commit into %s must be finished with "
                        "'imgchain commit --resume %s'", cur, rec.base ? rec.base : "?", cur);
        else
            add_finding(c, IC_CHAIN_INTERRUPTED, IC_CHAIN_ERROR, depth, cur,
                        "%s: an interrupted rebase onto '%s' must be finished with "
                        "'imgchain rebase --resume %s'", cur,
                        rec.new_backing ? rec.new_backing : "", cur);
        ic_journal_rec_clear(&rec);
    } else if (stale) {
        add_finding(c, IC_CHAIN_INTERRUPTED, IC_CHAIN_WARNING, depth, cur,
                    "%s: a stale journal of an operation that never started is left over "
                    "(the next commit or rebase removes it)", cur);
    }
}

static void check_image(struct cc *c, unsigned depth, struct ic_image *l, ic_chain_image_report *ir)
{
    if (c->o->skip_image_checks)
        return;
    ic_error *err = NULL;
    ic_check_result cr;
    int ret = ic_image_check(l, 0, c->o->image_report, c->o->payload, &cr, &err);
    if (ret == -ENOTSUP) {
        ic_error_free(err);
        return;
    }
    if (ret < 0) {
        add_finding(c, IC_CHAIN_CHECK_ERRORS, IC_CHAIN_ERROR, depth, l->filename,
                    "%s: the check could not run: %s", l->filename, ic_error_message(err));
        ic_error_free(err);
        return;
    }
    if (ir) {
        ir->checked = true;
        ir->check = cr;
    }
    if (cr.corruptions)
        add_finding(c, IC_CHAIN_IMAGE_CORRUPT, IC_CHAIN_ERROR, depth, l->filename,
                    "%s: %" PRId64 " errors were found in the image", l->filename, cr.corruptions);
    if (cr.check_errors)
        add_finding(c, IC_CHAIN_CHECK_ERRORS, IC_CHAIN_ERROR, depth, l->filename,
                    "%s: %" PRId64 " internal errors occurred during the check", l->filename,
                    cr.check_errors);
    if (cr.leaks)
        add_finding(c, IC_CHAIN_IMAGE_LEAKS, IC_CHAIN_WARNING, depth, l->filename,
                    "%s: %" PRId64 " leaked clusters were found", l->filename, cr.leaks);
}

static unsigned io_flags(const ic_chain_check_options *o)
{
    unsigned f = 0;
    if (o->flags & IC_OPEN_FORCE_SHARE)
        f |= IC_IO_SHARE;
    if (o->flags & IC_OPEN_NO_LOCK)
        f |= IC_IO_NOLOCK;
    return f;
}

int ic_chain_check(ic_chain_check_result **out, const char *path,
                   const ic_chain_check_options *opts, ic_error **errp)
{
    static const ic_chain_check_options defaults = IC_CHAIN_CHECK_OPTIONS_INIT;
    ic_chain_check_options ocur = defaults;
    *out = NULL;
    if (!path || !*path)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "ic_chain_check: no file name given");
    if (opts && (opts->version < 1 || opts->version > IC_CHAIN_CHECK_OPTIONS_VERSION))
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "ic_chain_check: unknown options version %u", opts->version);
    /* a version 1 struct ends before the cache field */
    if (opts)
        memcpy(&ocur, opts,
               opts->version >= 2 ? sizeof(ocur) : offsetof(ic_chain_check_options, cache));
    opts = &ocur;
    if (opts->format && !ic_driver_find(opts->format))
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "%s: unknown format '%s'",
                            path, opts->format);
    struct cc c = { .o = opts };
    c.res = calloc(1, sizeof(*c.res));
    if (!c.res)
        return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "ic_chain_check: out of memory");
    struct ic_walk w;
    ic_walk_init(&w, opts->max_depth);
    char *cur = strdup(path);
    char *rec_fmt = opts->format ? strdup(opts->format) : NULL;
    char *parent = NULL, *parent_name = NULL;
    uint64_t parent_size = 0;
    int ret = 0;
    if (!cur || (opts->format && !rec_fmt))
        c.oom = true;
    for (unsigned depth = 0; !c.oom; depth++) {
        if (depth > 0 && !ic_io_file_exists(cur)) {
            add_finding(&c, IC_CHAIN_MISSING_BACKING, IC_CHAIN_ERROR, depth - 1, parent,
                        "%s: backing file '%s' (%s) does not exist", parent, parent_name, cur);
            break;
        }
        /* the walk every chain walker shares (src/image/image-walk.c) */
        int wr = ic_walk_visit(&w, cur);
        if (wr == IC_WALK_TOO_DEEP) {
            add_finding(&c, IC_CHAIN_TOO_DEEP, IC_CHAIN_ERROR, depth - 1, parent,
                        "%s: the backing chain is deeper than %u images", path, w.max_depth);
            break;
        }
        if (wr == IC_WALK_LOOP) {
            add_finding(&c, IC_CHAIN_LOOP, IC_CHAIN_ERROR, depth - 1, parent,
                        "%s: backing file '%s' creates an infinite loop", parent, cur);
            break;
        }
        if (wr < 0) {
            c.oom = true;
            break;
        }
        ic_io *io = NULL;
        ic_error *err = NULL;
        ret = ic_image_open_file_cache(opts->open_file, opts->payload, &io, cur, io_flags(opts),
                                       opts->cache, &err);
        if (ret < 0) {
            if (depth == 0) {
                ic_error_propagate(errp, err);
                break;
            }
            add_finding(&c, IC_CHAIN_UNREADABLE, IC_CHAIN_ERROR, depth, cur, "%s",
                        ic_error_message(err));
            ic_error_free(err);
            ret = 0;
            break;
        }
        uint8_t probe[IC_CHECK_PROBE_BYTES];
        int64_t pn = ic_io_pread_upto(io, probe, sizeof(probe), 0);
        if (pn < 0) {
            add_finding(&c, IC_CHAIN_UNREADABLE, IC_CHAIN_ERROR, depth, cur,
                        "%s: cannot read the header: %s", cur, strerror((int)-pn));
            ic_io_close(io);
            break;
        }
        const struct ic_driver *actual = ic_driver_probe(probe, (size_t)pn);
        if (!rec_fmt && pn > 0) {
            /* probed: a format imgchain does not implement ends the walk */
            const struct ic_driver *own = NULL;
            const char *name = ic_probe_format(probe, (size_t)pn, cur, &own);
            if (!own) {
                add_finding(&c, IC_CHAIN_UNREADABLE, IC_CHAIN_ERROR, depth, cur,
                            "%s: %s images are not supported", cur, name);
                ic_io_close(io);
                break;
            }
        }
        const struct ic_driver *drv = actual;
        if (rec_fmt) {
            drv = ic_driver_find(rec_fmt);
            if (depth > 0 && (!drv || drv != actual)) {
                bool raw_rec = drv && ic_driver_headerless(drv);
                add_finding(&c, IC_CHAIN_FORMAT_MISMATCH,
                            raw_rec ? IC_CHAIN_WARNING : IC_CHAIN_ERROR, depth - 1, parent,
                            raw_rec ? "%s: backing file %s is recorded as %s but its content "
                                      "looks like %s (the guest wrote an image header?)"
                                    : "%s: backing file %s is recorded as %s but is %s",
                            parent, cur, rec_fmt, ic_driver_name(actual));
            }
            if (!drv) {
                ic_io_close(io);
                break;
            }
        } else if (depth > 0) {
            /* Probing is dangerous for a raw file (a guest can write an image
             * header into it); a file that probes as an image format stays
             * that format.  QED cannot record a non-raw backing format at
             * all, so that case is only worth knowing. */
            bool raw = ic_driver_headerless(actual);
            add_finding(&c, IC_CHAIN_FORMAT_UNRECORDED, raw ? IC_CHAIN_WARNING : IC_CHAIN_INFO,
                        depth - 1, parent,
                        raw ? "%s: no backing format recorded: %s is probed (as %s), which is "
                              "unsafe for raw files"
                            : "%s: no backing format recorded: %s is probed (as %s)",
                        parent, cur, ic_driver_name(actual));
        }
        ic_chain_image_report *ir = add_image(&c, cur);
        struct ic_image *l = NULL;
        unsigned lflags = IC_OPEN_NO_BACKING | IC_OPEN_CHECK |
                          (opts->flags & (IC_OPEN_FORCE_SHARE | IC_OPEN_NO_LOCK));
        ret = ic_image_open_layer(&l, io, cur, drv, lflags, opts->open_file, opts->payload, &err);
        if (ret < 0) {
            add_finding(&c, IC_CHAIN_UNREADABLE, IC_CHAIN_ERROR, depth, cur, "%s",
                        ic_error_message(err));
            ic_error_free(err);
            ret = 0;
            break;
        }
        if (ir) {
            ir->format = strdup(ic_driver_name(drv));
            ir->virtual_size = l->size;
            if (!ir->format)
                c.oom = true;
        }
        if (depth > 0 && l->size > parent_size)
            add_finding(&c, IC_CHAIN_BACKING_LARGER, IC_CHAIN_WARNING, depth, cur,
                        "%s: backing file (%" PRIu64 " bytes) is larger than its overlay %s "
                        "(%" PRIu64 " bytes)", cur, l->size, parent, parent_size);
        check_journal(&c, depth, cur);
        check_image(&c, depth, l, ir);
        bool np_oom = false;
        char *np = ic_walk_next(l, &np_oom);
        bool next = np != NULL;
        if (np_oom)
            c.oom = true;
        if (next) {
            check_relative(&c, depth, cur, l->backing_name);
            char *nn = strdup(l->backing_name);
            char *nf = l->backing_fmt ? strdup(l->backing_fmt) : NULL;
            if (!nn || (l->backing_fmt && !nf))
                c.oom = true;
            parent_size = l->size;
            free(parent);
            free(parent_name);
            parent = cur;
            parent_name = nn;
            cur = np;
            free(rec_fmt);
            rec_fmt = nf;
        }
        ic_image_free_chain(l);
        if (!next)
            break;
    }
    ic_walk_fini(&w);
    free(cur);
    free(rec_fmt);
    free(parent);
    free(parent_name);
    if (ret == 0 && c.oom)
        ret = ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "ic_chain_check: out of memory");
    if (ret < 0) {
        ic_chain_check_result_free(c.res);
        return ret;
    }
    *out = c.res;
    return 0;
}
