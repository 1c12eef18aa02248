/*
 * xml.h - what the files of src/xml share (private to src/xml).
 *
 * src/xml is the only module that sees libxml2 (docs/architecture.md); this
 * header therefore may use libxml2 types, and nothing outside src/xml may
 * include it.  Other modules use include/imgchain/xml.h.
 *
 *   xml-parse.c     document reading, generic trees, storage sources,
 *                   <domainsnapshot> parsing, enum name tables
 *   xml-domain.c    <domain> disks
 *   xml-format.c    the libvirt-style output buffer and the formatter
 *   xml-align.c     disk alignment and default external names
 *   xml-validate.c  RelaxNG validation against libvirt's schema
 *   xml-lib.c       loading libxml2 at the first parse (IC_XML(fn) calls)
 */
#ifndef IC_XML_XML_H
#define IC_XML_XML_H

#include <stdbool.h>
#include <stddef.h>
#include "imgchain/xml.h"
#include "util/compiler.h"
#include "util/error.h"
#include "xml-lib.h"

/* Largest document accepted (libxml2 takes an int length; real snapshot
 * documents with an embedded domain are a few tens of KiB). */
#define IC_XML_MAX_DOC (64u << 20)

/* ---- xml-parse.c ------------------------------------------------------- */

/* Parses @xml into a document whose root must be named @root (or @root2
 * when not NULL).  Blank text between elements is dropped. */
int ic_xml_read(xmlDocPtr *out, const char *xml, size_t len, const char *root,
                const char *root2, ic_error **errp);

/* First child element of @node named @name (no namespace), or NULL. */
xmlNodePtr ic_xml_child(xmlNodePtr node, const char *name);
/* Attribute value as a heap string (NULL if absent); *oom set on failure. */
char *ic_xml_prop(xmlNodePtr node, const char *name);
/* XPath string() of the first child @name: NULL when absent or empty. */
char *ic_xml_child_string(xmlNodePtr node, const char *name);
/* Converts a libxml2 subtree into a generic ic_xml_node. */
int ic_xml_node_from(ic_xml_node **out, xmlNodePtr node, ic_error **errp);

/* Parses a <source> element of @src->type into @src. @what names the disk
 * for messages. */
int ic_xml_source_parse(ic_storage_source *src, xmlNodePtr source, const char *what,
                        ic_error **errp);
/* Position of a kept <source> child in libvirt's output order. */
int ic_xml_source_child_rank(const char *name);
/* Enum lookups: the value, or -1 when @s is not a known name. */
int ic_xml_enum_lookup(const char *const *names, size_t n, const char *s);
int ic_storage_type_from_name(const char *s);
int ic_disk_format_from_name(const char *s);
int ic_snapshot_location_from_name(const char *s);
int ic_snapshot_state_from_name(const char *s);

/* ---- xml-domain.c ------------------------------------------------------ */

/* Parses the disks etc. of a <domain> or <inactiveDomain> element. */
int ic_domain_def_from_node(ic_domain_def **out, xmlNodePtr root, ic_error **errp);

/* ---- xml-validate.c ---------------------------------------------------- */

/* Validates a parsed document against the snapshot schema. */
int ic_xml_validate_doc(xmlDocPtr doc, ic_error **errp);

/* ---- xml-format.c ------------------------------------------------------ */

/*
 * Output buffer after libvirt's virBuffer: the indentation is written at
 * the start of every add that begins a line, text is escaped as
 * virBufferEscapeString does.  Allocation failure is sticky and reported
 * once by ic_sbuf_finish().
 */
struct ic_sbuf {
    char *data;
    size_t len;
    size_t cap;
    int indent;
    bool oom;
};

void ic_sbuf_add(struct ic_sbuf *b, const char *s);
void ic_sbuf_addf(struct ic_sbuf *b, const char *fmt, ...) IC_PRINTF(2, 3);
/* Adds @pre, @s escaped, @post; nothing at all when @s is NULL. */
void ic_sbuf_esc(struct ic_sbuf *b, const char *pre, const char *s, const char *post);
void ic_sbuf_indent(struct ic_sbuf *b, int delta);
/* Hands the string over (NUL-terminated) or fails with -ENOMEM. */
int ic_sbuf_finish(struct ic_sbuf *b, char **out, ic_error **errp);
void ic_sbuf_reset(struct ic_sbuf *b);

#endif
