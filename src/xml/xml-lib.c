/*
 * xml-lib.c - loading libxml2 when the first XML document is parsed.
 *
 * Design notes:
 *  1. Why: Debian's libxml2 links ICU and, through it, libstdc++, and
 *     loading and relocating them at every start of a process would cost
 *     more than the whole work of a metadata command such as `imgchain
 *     info` (bench/bench.sh's rows measure the start-up).  Most commands
 *     never see XML, so the library is opened with dlopen() the first
 *     time a document is parsed instead of being a link-time dependency.
 *  2. What it owns: the one handle on libxml2.so.2 (its stable ABI
 *     soname), opened once under pthread_once and never closed, and the
 *     table of the functions src/xml calls (IC_XML_FUNCS in xml-lib.h).
 *     Every symbol is resolved at load time: a libxml2 without one of them
 *     is refused as a whole rather than failing at some later call.
 *  3. The headers still come from libxml2's development package, so the
 *     types and constants are checked by the compiler, and the pointers in
 *     the table have the functions' exact types (__typeof__).
 */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "xml-lib.h"

#define IC_XML_SONAME "libxml2.so.2"

struct ic_xml_lib ic_xml_lib;

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static char load_error[256]; /* empty when loaded */

/* Resolves @name into @slot (any pointer object of pointer size). */
static bool resolve(void *handle, const char *name, void *slot, size_t size)
{
    void *sym = dlsym(handle, name);
    if (!sym) {
        snprintf(load_error, sizeof(load_error), "%s has no symbol %s", IC_XML_SONAME, name);
        return false;
    }
    /* the POSIX way to turn a symbol into a function pointer */
    memcpy(slot, &sym, size);
    return true;
}

static void load(void)
{
    void *h = dlopen(IC_XML_SONAME, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *e = dlerror();
        snprintf(load_error, sizeof(load_error), "cannot load %s: %s", IC_XML_SONAME,
                 e ? e : "unknown error");
        return;
    }
    bool ok = true;
#define IC_XML_RESOLVE(fn) \
    ok = ok && resolve(h, #fn, &ic_xml_lib.fn, sizeof(ic_xml_lib.fn));
    IC_XML_FUNCS(IC_XML_RESOLVE)
#undef IC_XML_RESOLVE
    ok = ok && resolve(h, "xmlFree", &ic_xml_lib.xmlFree, sizeof(ic_xml_lib.xmlFree));
    if (!ok) {
        memset(&ic_xml_lib, 0, sizeof(ic_xml_lib));
        dlclose(h);
    }
}

int ic_xml_lib_load(ic_error **errp)
{
    pthread_once(&load_once, load);
    if (load_error[0])
        return ic_error_set(errp, IC_ERR_UNSUPPORTED, ENOTSUP,
                            "XML support is not available: %s (install libxml2)", load_error);
    return 0;
}
