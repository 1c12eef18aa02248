/*
 * xml-validate.c - RelaxNG validation against libvirt's snapshot schema.
 *
 * Design notes
 * ------------
 * Owns: loading /usr/share/libvirt/schemas/domainsnapshot.rng (Debian's
 * libvirt0; $IMGCHAIN_SNAPSHOT_RNG overrides it) with libxml2's xmlRelaxNG
 * API and checking documents against it, as libvirt does for
 * VIR_DOMAIN_SNAPSHOT_CREATE_VALIDATE and `virsh snapshot-create --validate`.
 * The rules are those of libvirt's schema check of a snapshot document.
 *
 * Invariants:
 *  1. The schema (it includes domain.rng, a large grammar) is compiled once
 *     per process under a mutex and never freed; validation contexts are
 *     per call, so concurrent validations are safe.
 *  2. libxml2 never prints: its structured error handlers are pointed at a
 *     collector that keeps the first message, which becomes the ic_error.
 *  3. A missing schema is -ENOENT (the caller may decide to skip), a schema
 *     that does not compile is -EIO, an invalid document is -EINVAL.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


#include "xml.h"

struct first_error {
    char msg[512];
    int line;
    int domain;
    bool set;
};

static void collect(void *opaque, xmlErrorPtr e)
{
    struct first_error *fe = opaque;
    if (fe->set || !e)
        return;
    fe->set = true;
    fe->line = e->line;
    fe->domain = e->domain;
    snprintf(fe->msg, sizeof(fe->msg), "%s", e->message ? e->message : "unknown error");
    size_t n = strlen(fe->msg);
    while (n && (fe->msg[n - 1] == '\n' || fe->msg[n - 1] == ' '))
        fe->msg[--n] = '\0';
}

/* Swallows libxml2's generic (unstructured) messages, such as the I/O
 * warning it prints for a missing schema file. */
static void quiet(void *ctx, const char *msg, ...)
{
    (void)ctx;
    (void)msg;
}

static pthread_mutex_t schema_lock = PTHREAD_MUTEX_INITIALIZER;
static xmlRelaxNGPtr schema;

static const char *schema_path(void)
{
    const char *p = getenv("IMGCHAIN_SNAPSHOT_RNG");
    return p && *p ? p : IC_SNAPSHOT_SCHEMA_PATH;
}

static int load_schema(xmlRelaxNGPtr *out, ic_error **errp)
{
    pthread_mutex_lock(&schema_lock);
    if (schema) {
        *out = schema;
        pthread_mutex_unlock(&schema_lock);
        return 0;
    }
    const char *path = schema_path();
    struct first_error fe = { .set = false };
    int ret = 0;
    xmlRelaxNGParserCtxtPtr pctxt = IC_XML(xmlRelaxNGNewParserCtxt)(path);
    if (!pctxt) {
        ret = ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
        goto out;
    }
    IC_XML(xmlRelaxNGSetParserStructuredErrors)(pctxt, collect, &fe);
    /* the include of domain.rng etc. is resolved relative to @path; no
     * network access is involved */
    xmlGenericErrorFunc old = IC_XML_GLOBAL(xmlGenericError);
    void *old_ctx = IC_XML_GLOBAL(xmlGenericErrorContext);
    IC_XML(xmlSetGenericErrorFunc)(NULL, quiet);
    schema = IC_XML(xmlRelaxNGParse)(pctxt);
    IC_XML(xmlSetGenericErrorFunc)(old_ctx, old);
    IC_XML(xmlRelaxNGFreeParserCtxt)(pctxt);
    if (!schema) {
        if (fe.domain == XML_FROM_IO || !fe.set || strstr(fe.msg, "could not load"))
            ret = ic_error_set(errp, IC_ERR_NOTFOUND, ENOENT,
                               "cannot load snapshot schema %s%s%s", path,
                               fe.set ? ": " : "", fe.set ? fe.msg : "");
        else
            ret = ic_error_set(errp, IC_ERR_IO, EIO,
                               "snapshot schema %s does not compile: %s", path, fe.msg);
        goto out;
    }
    *out = schema;
out:
    pthread_mutex_unlock(&schema_lock);
    return ret;
}

int ic_xml_validate_doc(xmlDocPtr doc, ic_error **errp)
{
    xmlRelaxNGPtr rng = NULL;
    int ret = load_schema(&rng, errp);
    if (ret < 0)
        return ret;
    xmlRelaxNGValidCtxtPtr vctxt = IC_XML(xmlRelaxNGNewValidCtxt)(rng);
    if (!vctxt)
        return ic_error_set(errp, IC_ERR_NOMEM, ENOMEM, "out of memory");
    struct first_error fe = { .set = false };
    IC_XML(xmlRelaxNGSetValidStructuredErrors)(vctxt, collect, &fe);
    int r = IC_XML(xmlRelaxNGValidateDoc)(vctxt, doc);
    IC_XML(xmlRelaxNGFreeValidCtxt)(vctxt);
    if (r == 0)
        return 0;
    if (r < 0)
        return ic_error_set(errp, IC_ERR_OTHER, EIO, "RelaxNG validation failed internally");
    return ic_error_set(errp, IC_ERR_INVALID, EINVAL,
                        "XML document failed to validate against schema: %s",
                        fe.set ? fe.msg : "document is not valid");
}

int ic_snapshot_xml_validate(const char *xml, size_t len, ic_error **errp)
{
    xmlDocPtr doc = NULL;
    int ret = ic_xml_read(&doc, xml, len, "domainsnapshot", NULL, errp);
    if (ret < 0)
        return ret;
    ret = ic_xml_validate_doc(doc, errp);
    IC_XML(xmlFreeDoc)(doc);
    return ret;
}
