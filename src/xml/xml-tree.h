/*
 * xml-tree.h - generic XML trees (ic_xml_node) as whole documents, for the
 * domain store (src/snap/domain*.c).  Private to the library, and free of
 * libxml2 types so that src/snap can include it.
 */
#ifndef IC_XML_XML_TREE_H
#define IC_XML_XML_TREE_H

#include <stdbool.h>
#include <stddef.h>
#include "imgchain/xml.h"

/* Parses the document @xml (@len bytes) whose root element must be @root
 * into a tree.  Comments and blank text between elements are dropped; a
 * top-level <metadata> is kept pre-serialized as libvirt prints it.
 * 0; -EINVAL malformed or another root; -ENOMEM. */
int ic_xml_tree_parse(ic_xml_node **out, const char *xml, size_t len, const char *root,
                      ic_error **errp);

/* Formats @node as libvirt formats a <domain> document (two-space indent,
 * single quotes, the root's id= dropped; without @secure the passwd= of
 * <graphics> too).  Heap string ending with a newline. */
int ic_xml_tree_format(char **out, const ic_xml_node *node, bool secure, ic_error **errp);

/* Deep copy; NULL on allocation failure. */
ic_xml_node *ic_xml_tree_clone(const ic_xml_node *node);

/* Sets (adds or replaces) attribute @name; 0 or -ENOMEM. */
int ic_xml_tree_set_attr(ic_xml_node *node, const char *name, const char *value);
/* Removes attribute @name if present. */
void ic_xml_tree_del_attr(ic_xml_node *node, const char *name);
/* The first child element named @name (mutable), or NULL. */
ic_xml_node *ic_xml_tree_child(ic_xml_node *node, const char *name);
/* The child element named @name, appended empty when missing; NULL on
 * allocation failure. */
ic_xml_node *ic_xml_tree_child_make(ic_xml_node *node, const char *name);
/* Removes every child element named @name. */
void ic_xml_tree_del_children(ic_xml_node *node, const char *name);
/* Sets the text of the leaf child @name (made when missing); 0 or -ENOMEM. */
int ic_xml_tree_set_child_text(ic_xml_node *node, const char *name, const char *text);

#endif
