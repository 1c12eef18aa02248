/*
 * xml-lib.h - libxml2, loaded the first time a document is parsed (see the
 * design notes of xml-lib.c).  Private to src/xml.
 *
 * Code in src/xml calls libxml2 through IC_XML(fn)(...) (and IC_XML_FREE,
 * IC_XML_GLOBAL for the few globals); the headers are included only for
 * the types and constants.  ic_xml_lib_load() must have succeeded first:
 * ic_xml_read() calls it, and every other libxml2 call in src/xml works on
 * a document ic_xml_read() returned.
 */
#ifndef IC_XML_XML_LIB_H
#define IC_XML_XML_LIB_H

#include <libxml/globals.h>
#include <libxml/parser.h>
#include <libxml/relaxng.h>
#include <libxml/tree.h>
#include <libxml/xmlerror.h>

#include "util/error.h"

/* Every libxml2 function src/xml calls. */
#define IC_XML_FUNCS(X)                                                                  \
    X(xmlNewParserCtxt) X(xmlCtxtReadMemory) X(xmlCtxtGetLastError) X(xmlFreeParserCtxt) \
    X(xmlFreeDoc) X(xmlDocGetRootElement) X(xmlGetNoNsProp) X(xmlNodeGetContent)         \
    X(xmlNodeListGetString) X(xmlNewDoc) X(xmlBufferCreate) X(xmlBufferFree)             \
    X(xmlBufferContent) X(xmlDocCopyNode) X(xmlDocSetRootElement) X(xmlFreeNode)         \
    X(xmlUnlinkNode) X(xmlNodeDump) X(xmlSetGenericErrorFunc)                            \
    X(xmlRelaxNGNewParserCtxt) X(xmlRelaxNGSetParserStructuredErrors) X(xmlRelaxNGParse) \
    X(xmlRelaxNGFreeParserCtxt) X(xmlRelaxNGNewValidCtxt)                                \
    X(xmlRelaxNGSetValidStructuredErrors) X(xmlRelaxNGValidateDoc)                       \
    X(xmlRelaxNGFreeValidCtxt) X(__xmlIndentTreeOutput) X(__xmlGenericError)             \
    X(__xmlGenericErrorContext)

struct ic_xml_lib {
#define IC_XML_MEMBER(fn) __typeof__(fn) *fn;
    IC_XML_FUNCS(IC_XML_MEMBER)
#undef IC_XML_MEMBER
    xmlFreeFunc *xmlFree; /* a variable in libxml2: its address */
};

extern struct ic_xml_lib ic_xml_lib;

#define IC_XML(fn) (ic_xml_lib.fn)
#define IC_XML_FREE(p) ((*ic_xml_lib.xmlFree)(p))
/* libxml2's per-thread globals (xmlIndentTreeOutput, xmlGenericError ...) */
#define IC_XML_GLOBAL(name) (*ic_xml_lib.__##name())

/* Loads libxml2 once per process; 0, or -ENOTSUP with a message naming
 * the library when it cannot be loaded. */
int ic_xml_lib_load(ic_error **errp);

#endif
