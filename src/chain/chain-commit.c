/*
 * chain-commit.c - ic_chain_commit(): write the data of an overlay (and of
 * every image between it and the base) into the base.
 *
 * Design notes (reference: qcow2-qed.md section 3.6, qemu-img's img_commit):
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
 *     (qemu does the same); other overlays of the base or of the images
 *     between, found by scanning FILE's folder, are named in a warning,
 *     because the commit changes what they read.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "chain-copy.h"
#include "chain-journal.h"
#include "util/path.h"

/* ---- commit ----------------------------------------------------------------- */

/* Reopens @parent->backing read-write with a write lock, keeping the chain
 * below it.  Our own shared lock is dropped first, because OFD locks of two
 * descriptions of one file conflict even within one process. */
int ic_chain_reopen_rw(struct ic_image *parent, ic_error **errp)
{
    struct ic_image *old = parent->backing;
    if (!old->read_only)
        return 0;
    unsigned ioflags = IC_IO_RDWR;
    if (old->flags & IC_OPEN_NO_LOCK)
        ioflags |= IC_IO_NOLOCK;
    if (old->flags & IC_OPEN_DIRECT)
        ioflags |= IC_IO_DIRECT;
    ic_io_lock(old->file, IC_LOCK_NONE, NULL);
    ic_io *file = NULL;
    int ret;
    if (!old->open_file) {
        /* The base receives the bulk of the data: the aio backend with
         * O_DIRECT moves it without copying it through the page cache (the
         * copy dominates a buffered commit).  A file system without
         * O_DIRECT falls back to the POSIX backend. */
        ic_error *derr = NULL;
        ret = ic_io_open_aio(&file, old->filename, ioflags | IC_IO_DIRECT, &derr);
        if (ret == -EINVAL) {
            ic_error_free(derr);
            ret = ic_io_open_file(&file, old->filename, ioflags, errp);
        } else {
            ic_error_propagate(errp, derr);
        }
    } else {
        ret = ic_image_open_file(old->open_file, old->payload, &file, old->filename, ioflags, errp);
    }
    struct ic_image *nl = NULL;
    if (ret == 0)
        ret = ic_image_open_layer(&nl, file, old->filename, old->drv,
                                  (old->flags | IC_OPEN_RDWR) & ~IC_OPEN_FORCE_SHARE,
                                  old->open_file, old->payload, errp);
    if (ret < 0) {
        if (!(old->flags & IC_OPEN_NO_LOCK))
            ic_io_lock(old->file, (old->flags & IC_OPEN_FORCE_SHARE) ? IC_LOCK_FORCE_SHARE
                                                                     : IC_LOCK_SHARED, NULL);
        ic_error_prepend(errp, "%s: cannot reopen read-write", old->filename);
        return ret;
    }
    if ((nl->backing_name == NULL) != (old->backing_name == NULL) ||
        (nl->backing_name && strcmp(nl->backing_name, old->backing_name))) {
        ic_image_free_chain(nl);
        return ic_error_set(errp, IC_ERR_BUSY, EBUSY,
                            "%s: its backing file changed while it was open", old->filename);
    }
    nl->backing = old->backing;
    nl->backing_path = old->backing_path;
    nl->depth = old->depth;
    old->backing = NULL;
    old->backing_path = NULL;
    parent->backing = nl;
    ic_image_free_chain(old);
    return 0;
}

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
    ret = ic_copy_above_base(top, base, base->backing ? 0 : IC_ZERO_MAY_UNMAP, o->progress,
                             o->payload, NULL, errp);
    if (ret < 0)
        return ret;
    return ic_image_flush(base, errp);
}

/* Empties FILE (qemu's blk_make_empty).  A format without make_empty keeps
 * its data, as qemu-img leaves a QED top as it is. */
static int commit_empty_top(struct ic_image *top, const ic_commit_options *o, ic_error **errp)
{
    if (!top->drv->make_empty) {
        ic_chain_warnf(o->warn, o->payload,
                       "%s: format %s cannot be emptied; it keeps its data (as qemu-img)",
                       top->filename, top->drv->name);
        return 0;
    }
    top->state = IC_IMAGE_DIRTY;
    int ret = top->drv->make_empty(top, errp);
    if (ret < 0) {
        ic_error_prepend(errp, "%s: cannot empty the image", top->filename);
        return ret;
    }
    return ic_image_flush(top, errp);
}

int ic_chain_commit(const char *path, const ic_commit_options *opts, ic_error **errp)
{
    static const ic_commit_options defaults = IC_COMMIT_OPTIONS_INIT;
    ic_commit_options o = opts ? *opts : defaults;
    if (!path || !*path)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL, "ic_chain_commit: no file name given");
    if (o.version != IC_COMMIT_OPTIONS_VERSION)
        return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                            "ic_chain_commit: unknown options version %u", o.version);
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
        ret = ic_error_set(errp, IC_ERR_BUSY, EBUSY,
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
    oo.flags = IC_OPEN_RDWR | (o.flags & (IC_OPEN_DIRECT | IC_OPEN_NO_LOCK));
    oo.open_file = o.open_file;
    oo.payload = o.payload;
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
        while (base && strcmp(base->filename, base_name) &&
               !ic_chain_same_file(base->filename, base_name)) {
            parent = base;
            base = base->backing;
        }
        if (!base) {
            ret = ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                               "did not find '%s' in the backing chain of '%s'", base_name, path);
            goto fail_close;
        }
    }
    if (!base->drv->pwrite) {
        ret = ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP, "%s: format %s cannot be written",
                           base->filename, base->drv->name);
        goto fail_close;
    }
    if (base->size < top->size && !base->drv->truncate) {
        ret = ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                           "%s: the base is smaller than %s and format %s cannot grow",
                           base->filename, path, base->drv->name);
        goto fail_close;
    }
    ret = ic_chain_reopen_rw(parent, errp);
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
            .top_fmt = (char *)(uintptr_t)top->drv->name,
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
            ret = commit_empty_top(top, &o, errp);
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
    ic_error_prepend(errp, "ic_chain_commit");
    return ret;
}
