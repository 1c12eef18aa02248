/*
 * domain-journal.c - DIR/D.journal: the plan of a multi-file domain
 * operation and its point of no return.
 *
 * Design notes
 * ------------
 * Owns: the journal file of each domain.  Spec: docs/domain-lifecycle.md
 * section 5.
 *
 * Invariants:
 *  1. The journal is written (atomically) before the first image of an
 *     operation changes, and removed after its last metadata write.
 *  2. "phase": "prepare" means the operation has not passed its point of
 *     no return: recovery undoes the steps it finds done.  "phase":
 *     "commit" means it has: recovery redoes the metadata writes, each of
 *     which is idempotent.  The commit record is one atomic rename, so a
 *     crash leaves one phase or the other, never a mix.
 *  3. Recovery runs only under the writer lock (ic_domain_open WRITE).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "domain-internal.h"
#include "io/io-dir.h"
#include "util/error.h"

int ic_dom_journal_write(ic_domain *dom, json_object *j, ic_error **errp)
{
    const char *s = json_object_to_json_string_ext(
        j, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE);
    if (!s)
        return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
    return ic_dir_write_atomic(dom->journal_path, s, strlen(s), IC_DOM_FILE_MODE, errp);
}

int ic_dom_journal_load(ic_domain *dom, json_object **out, ic_error **errp)
{
    *out = NULL;
    if (ic_dir_path_type(dom->journal_path) == IC_DIR_PATH_MISSING)
        return 0;
    char *text = NULL;
    size_t len = 0;
    int ret = ic_dir_read_file(&text, &len, dom->journal_path, IC_DOM_MAX_FILE, errp);
    if (ret < 0)
        return ret;
    json_object *j = json_tokener_parse(text);
    free(text);
    if (!j || !json_object_is_type(j, json_type_object) || !ic_dom_jstr(j, "op") ||
        !ic_dom_jstr(j, "phase")) {
        json_object_put(j);
        return ic_error_set(errp, IC_ERR_CORRUPT, EINVAL, "%s: not an imgchain journal",
                            dom->journal_path);
    }
    *out = j;
    return 0;
}

int ic_dom_journal_remove(ic_domain *dom, ic_error **errp)
{
    if (ic_dir_path_type(dom->journal_path) == IC_DIR_PATH_MISSING)
        return 0;
    return ic_dir_unlink(dom->journal_path, errp);
}

char *ic_dom_journal_describe(json_object *j)
{
    const char *op = ic_dom_jstr(j, "op");
    const char *snap = ic_dom_jstr(j, "snapshot");
    const char *phase = ic_dom_jstr(j, "phase");
    char *s = NULL;
    if (asprintf(&s, "interrupted %s of '%s' (phase %s)", op ? op : "?", snap ? snap : "",
                 phase ? phase : "?") < 0)
        return NULL;
    return s;
}

int ic_dom_recover(ic_domain *dom, ic_error **errp)
{
    json_object *j = NULL;
    int ret = ic_dom_journal_load(dom, &j, errp);
    if (ret < 0 || !j)
        return ret;
    const char *op = ic_dom_jstr(j, "op");
    const char *phase = ic_dom_jstr(j, "phase");
    const char *snap = ic_dom_jstr(j, "snapshot");
    bool commit = !strcmp(phase, "commit");
    char *live_detail = NULL;
    if (!strcmp(op, "snapshot-create-live")) {
        /* qemu, not the phase, says whether the live switch happened */
        ret = ic_dom_live_recover(dom, j, &commit, &live_detail, errp);
    } else if (!strcmp(op, "snapshot-create")) {
        ret = commit ? ic_dom_create_finish(dom, j, errp) : ic_dom_create_rollback(dom, j, errp);
    } else if (!strcmp(op, "snapshot-revert") || !strcmp(op, "snapshot-delete")) {
        /* before the commit record only new overlays exist (the create
         * rollback removes them); after it the steps run to the end */
        ret = commit ? ic_dom_steps_run(dom, j, errp) : ic_dom_create_rollback(dom, j, errp);
    } else {
        ret = ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                           "%s: journal of an unknown operation '%s'", dom->journal_path, op);
    }
    if (ret == 0) {
        free(dom->recovered);
        if (asprintf(&dom->recovered, "%s interrupted %s of '%s'%s%s",
                     commit ? "finished" : "rolled back", op, snap ? snap : "",
                     live_detail ? ": " : "", live_detail ? live_detail : "") < 0) {
            dom->recovered = NULL;
            ret = ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
        }
    } else {
        ic_error_prepend(errp, "%s: cannot recover the %s", dom->name,
                         dom->pending ? dom->pending : "interrupted operation");
    }
    free(live_detail);
    json_object_put(j);
    return ret;
}
