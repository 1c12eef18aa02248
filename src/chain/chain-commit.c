/*
 * chain-commit.c - ic_chain_commit(): write the data of an overlay (and of
 * every image between it and the base) into the base.
 *
 * Design notes (qemu-img's img_commit is the behaviour followed):
 *  1. What it owns: the order of writes across the images of one chain
 *     during a commit, and the journal phases of a commit.
 *  2. State machine (sticky ERROR: the journal stays, --resume finishes):
 *
 *        validate ---> JOURNALED ---> COPY ---> (base flushed) ---> EMPTY
 *           | refuse       |            |                             |
 *           v              v            v                             v
 *        nothing         ERROR <------- + <---------------------------+
 *        written    (journal kept)                        DONE (journal removed)
 *
 *     transition                         function
 *     validate -> JOURNALED              commit_prepare + ic_journal_create
 *     JOURNALED -> COPY                  commit_copy
 *     COPY -> EMPTY                      ic_journal_set_phase after base flush
 *     EMPTY -> DONE                      commit_empty_top + ic_journal_finish
 *  3. Invariants:
 *     a. Everything that can be refused (missing file, loop, base not in the
 *        chain, locked image, unwritable or unresizable base, an unfinished
 *        journal) is refused before the journal or any image is written.
 *     b. Data goes into the base first.  Every range copied is allocated
 *        above the base, so FILE's guest view (and that of every image
 *        between) is unchanged by it: a crash during COPY loses nothing.
 *     c. FILE is emptied only after the base is flushed and the journal says
 *        EMPTY: a cluster dropped from FILE then reads the same bytes from
 *        the base.  If we crash after the base flush, we only leave FILE
 *        partly emptied, with the same guest view.
 *     d. Re-running COPY is idempotent (the same ranges of the same view are
 *        written again), so resuming simply repeats the interrupted phase.
 *  4. The base is reopened read-write with a write lock for the duration
 *     (qemu does the same), in the -t cache mode (the default writes it
 *     O_DIRECT where the file system allows, src/image/image-open.c
 *     note 6); other overlays of the base or of the images
 *     between, found by scanning FILE's folder, are named in a warning,
 *     because the commit changes what they read.
 */
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "chain-copy.h"
#include "chain-ratelimit.h"
#include "chain-find.h"
#include "chain-journal.h"
#include "util/path.h"

/* ---- commit ----------------------------------------------------------------- */

/* Warns about images outside this chain that use the base or an image
 * between FILE and the base without going through FILE. */
static void warn_other_users(const char *path, struct ic_image *top, struct ic_image *base,
                             const ic_commit_options *o)
{
    size_t nt = 0;
    for (struct ic_image *l = top->backing; l; l = l->backing) {
        nt++;
        if (l == base)
            break;
    }
    char **targets = calloc(nt, sizeof(*targets));
    char *stop = ic_chain_realpath(path);
    char *dir = ic_path_dirname(path);
    char **members = calloc(nt + 1, sizeof(*members));
    if (!targets || !stop || !dir || !members)
        goto out;
    size_t i = 0;
    members[0] = strdup(stop);
    for (struct ic_image *l = top->backing; l && i < nt; l = l->backing, i++) {
        targets[i] = ic_chain_realpath(l->filename);
        members[i + 1] = targets[i] ? strdup(targets[i]) : NULL;
        if (!targets[i] || !members[i + 1])
            goto out;
    }
    struct ic_dep_hit *hits = NULL;
    size_t nhits = 0;
    const char *dirs[1] = { dir };
    ic_error *err = NULL;
    if (ic_chain_scan_users((const char *const *)targets, nt, (const char *const *)&stop, 1,
                            dirs, 1, 0, o->open_file, o->payload, &hits, &nhits, NULL,
                            NULL, &err) < 0) {
        ic_chain_warnf(o->warn, o->payload, "could not scan %s for other users of the chain: %s",
                       dir, ic_error_message(err));
        ic_error_free(err);
        goto out;
    }
    for (size_t h = 0; h < nhits; h++) {
        char *real = ic_chain_realpath(hits[h].file);
        bool member = false;
        for (size_t m = 0; m <= nt && real; m++)
            if (members[m] && !strcmp(members[m], real))
                member = true;
        if (!member)
            ic_chain_warnf(o->warn, o->payload,
                           "%s is also used by %s: after this commit that image reads changed data",
                           targets[hits[h].target], hits[h].file);
        free(real);
    }
    ic_dep_hits_free(hits, nhits);
out:
    if (targets)
        for (size_t k = 0; k < nt; k++)
            free(targets[k]);
    if (members)
        for (size_t k = 0; k <= nt; k++)
            free(members[k]);
    free(targets);
    free(members);
    free(stop);
    free(dir);
}

/* Copies every range allocated above @base in @top's view into @base. */
static int commit_copy(struct ic_image *top, struct ic_image *base, const ic_commit_options *o,
                       ic_error **errp)
{
    uint64_t size = top->size;
    int ret;
    if (base->size < size) {
        /* Growing the base changes no view: past its old end it read as
         * zeroes and still does. */
        ret = ic_image_truncate(base, size, errp);
        if (ret < 0)
            return ret;
    }
    /* Parallel reads, batches of writes toward a raw base (chain-copy.c);
     * the base is flushed before the journal may say EMPTY. */
    /* -r: the limit waits in the engine's progress hook, on the bytes its
     * statistics say were written (chain-ratelimit.c) */
    struct ic_copy_stats cst;
    memset(&cst, 0, sizeof(cst));
    struct ic_ratelimit_progress rlp;
    ic_chain_progress_fn progress = o->progress;
    void *payload = o->payload;
    if (o->rate_limit) {
        ic_ratelimit_progress_init(&rlp, o->rate_limit, &cst.data_bytes, &cst.zero_bytes,
                                   progress, payload);
        progress = ic_ratelimit_progress_cb;
        payload = &rlp;
    }
    ret = ic_copy_above_base(top, base, base->backing ? 0 : IC_ZERO_MAY_UNMAP, progress,
                             payload, &cst, errp);
    if (ret < 0)
        return ret;
    return ic_image_flush(base, errp);
}

/* A base whose raw format was probed refuses a first sector that would probe
 * as another format (src/image/raw.c note 4).  The commit checks the sector
 * it will write before the journal exists, so the refusal changes nothing
 * and leaves no interrupted operation behind. */
static int check_probed_base(struct ic_image *top, struct ic_image *base, ic_error **errp)
{
    if (!base->probed || !ic_image_headerless(base) || top->size == 0)
        return 0;
    uint8_t sec[IC_PROBE_SECTOR] = { 0 };
    size_t n = top->size < sizeof(sec) ? (size_t)top->size : sizeof(sec);
    int ret = ic_image_pread(top, sec, n, 0, errp);
    if (ret < 0)
        return ret;
    const struct ic_driver *drv = NULL;
    const char *name = ic_probe_format(sec, sizeof(sec), NULL, &drv);
    if (drv && ic_driver_headerless(drv))
        return 0;
    return ic_error_set(errp, IC_ERR_INVALID, EPERM,
                        "%s: commit refused: the data would make the first sector of this "
                        "probed raw image probe as %s; record its format as raw "
                        "(rebase -u -F raw) to commit", base->filename, name);
}

/* Empties FILE (qemu's blk_make_empty) and flushes it. */
static int commit_empty_top(struct ic_image *top, ic_error **errp)
{
    int ret = ic_image_make_empty(top, errp);
    if (ret < 0)
        return ret;
    return ic_image_flush(top, errp);
}

int ic_chain_commit(const char *path, const ic_commit_options *opts, ic_error **errp)
{
    static const ic_commit_options defaults = IC_COMMIT_OPTIONS_INIT;
    ic_commit_options o = defaults;
    if (!path || !*path)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "ic_chain_commit: no file name given");
    if (opts && (opts->version < 1 || opts->version > IC_COMMIT_OPTIONS_VERSION))
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "ic_chain_commit: unknown options version %u", opts->version);
    /* a version 1 struct ends before the cache field */
    if (opts)
        memcpy(&o, opts, opts->version >= 3   ? sizeof(o)
                         : opts->version == 2 ? offsetof(ic_commit_options, rate_limit)
                                              : offsetof(ic_commit_options, cache));
    struct ic_journal_rec rec;
    bool stale = false;
    int ret = ic_journal_load(&rec, &stale, path, o.open_file, o.payload, errp);
    if (ret < 0)
        goto fail_noclear;
    bool resuming = false;
    bool drop = o.drop || o.base;
    char *base_name = NULL;
    if (o.resume) {
        if (ret == 0) {
            ret = ic_error_set(errp, IC_ERR_NOTFOUND, ENOENT,
                               "%s: there is no interrupted operation to resume", path);
            goto fail_noclear;
        }
        if (rec.op != IC_JOURNAL_COMMIT) {
            ret = ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                               "%s: the interrupted operation is a %s; resume it with rebase",
                               path, ic_journal_op_name(rec.op));
            goto fail;
        }
        resuming = true;
        drop = rec.flags & IC_JOURNAL_F_DROP;
        o.format = rec.top_fmt;
        base_name = rec.base;
    } else if (ret == 1) {
        ret = ic_error_set(errp, IC_ERR_PENDING, EINPROGRESS,
                           "%s: an interrupted %s was found; finish it with --resume first",
                           path, ic_journal_op_name(rec.op));
        goto fail;
    } else {
        if (stale && (ret = ic_journal_remove(path, errp)) < 0)
            goto fail;
        base_name = (char *)(uintptr_t)o.base;
    }

    ic_open_options oo = IC_OPEN_OPTIONS_INIT;
    oo.format = o.format;
    oo.flags = IC_OPEN_RDWR | (o.flags & IC_OPEN_NO_LOCK);
    oo.open_file = o.open_file;
    oo.payload = o.payload;
    oo.cache = o.cache;
    ic_image *top = NULL;
    ret = ic_image_open(&top, path, &oo, errp);
    if (ret < 0)
        goto fail;
    if (!top->backing) {
        ret = ic_error_set(errp, IC_ERR_INVALID, EINVAL, "%s: image does not have a backing file",
                           path);
        goto fail_close;
    }
    struct ic_image *parent = top, *base = top->backing;
    if (base_name) {
        base = ic_chain_find_backing(top, base_name, &parent);
        if (!base) {
            ret = ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                               "did not find '%s' in the backing chain of '%s'", base_name, path);
            goto fail_close;
        }
    }
    if (!ic_image_can_write(base)) {
        ret = ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP, "%s: format %s cannot be written",
                           base->filename, ic_image_format(base));
        goto fail_close;
    }
    if (base->size < top->size && !ic_image_can_resize(base)) {
        ret = ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                           "%s: the base is smaller than %s and format %s cannot grow",
                           base->filename, path, ic_image_format(base));
        goto fail_close;
    }
    if (!resuming && (ret = check_probed_base(top, base, errp)) < 0)
        goto fail_close;
    ret = ic_image_reopen_backing_rw(parent, o.cache, errp);
    if (ret < 0)
        goto fail_close;
    base = parent->backing;
    /* A base that cannot grow (a qcow2 image holding bitmaps, as in qemu)
     * refuses here, before the journal exists and before any write; growing
     * changes no view (past its old end the base read as zeroes). */
    if (!resuming && base->size < top->size &&
        (ret = ic_image_truncate(base, top->size, errp)) < 0)
        goto fail_close;
    if (!o.no_dependents_scan && !resuming)
        warn_other_users(path, top, base, &o);

    struct ic_journal *j = NULL;
    if (resuming) {
        ret = ic_journal_reopen(&j, &rec, path, o.open_file, o.payload, errp);
    } else {
        struct ic_journal_rec nr = {
            .op = IC_JOURNAL_COMMIT,
            .phase = IC_JOURNAL_COPY,
            .flags = drop ? IC_JOURNAL_F_DROP : 0,
            .top = (char *)(uintptr_t)path,
            .top_fmt = (char *)(uintptr_t)ic_image_format(top),
            .base = ic_chain_realpath(base->filename),
        };
        if (!nr.base)
            ret = ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
        else
            ret = ic_journal_create(&j, &nr, o.open_file, o.payload, errp);
        free(nr.base);
    }
    if (ret < 0)
        goto fail_close;
    /* From here on the journal records the operation. */
    if (!resuming || rec.phase == IC_JOURNAL_COPY)
        ret = commit_copy(top, base, &o, errp);
    else if (o.progress)
        o.progress(top->size, top->size, o.payload);
    if (ret == 0 && !drop) {
        /* The base is complete and flushed: if we crash after this point,
         * FILE is at worst partly emptied and reads the same. */
        if (!resuming || rec.phase == IC_JOURNAL_COPY)
            ret = ic_journal_set_phase(j, IC_JOURNAL_EMPTY, errp);
        if (ret == 0)
            ret = commit_empty_top(top, errp);
    }
    if (ret == 0)
        ret = ic_image_flush(top, errp);
    if (ret < 0) {
        ic_journal_close(j);
        goto fail_close;
    }
    ret = ic_journal_finish(j, errp);
    if (ret < 0)
        goto fail_close;
    ret = ic_image_close(top);
    top = NULL;
    if (ret < 0) {
        ic_error_set(errp, ic_error_kind_from_errno(-ret), -ret, "%s: close failed: %s", path,
                     strerror(-ret));
        goto fail;
    }
    ic_journal_rec_clear(&rec);
    return 0;

fail_close:
    ic_image_close(top);
fail:
    ic_journal_rec_clear(&rec);
fail_noclear:
    return ret;
}
