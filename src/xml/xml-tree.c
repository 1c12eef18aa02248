/*
 * xml-tree.c - generic trees as documents: parse, clone, edit.  The
 * formatter is format_tree() in xml-format.c (ic_xml_tree_format), shared
 * with the embedded <domain> of snapshot documents so that a domain reads
 * the same in DIR/D.xml and in every snapshot's <domain>.
 *
 * Design notes:
 *  1. Trees are the ic_xml_node structs of imgchain/xml.h; edits keep
 *     attribute and child order (an attribute set anew is appended, one
 *     replaced keeps its place), so a document survives parse and format
 *     byte for byte apart from what was edited.
 *  2. Allocation failures leave the tree unchanged.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "xml.h"
#include "xml-tree.h"

int ic_xml_tree_parse(ic_xml_node **out, const char *xml, size_t len, const char *root,
                      ic_error **errp)
{
    *out = NULL;
    xmlDocPtr doc = NULL;
    int ret = ic_xml_read(&doc, xml, len, root, NULL, errp);
    if (ret < 0)
        return ret;
    ret = ic_xml_node_from(out, IC_XML(xmlDocGetRootElement)(doc), errp);
    IC_XML(xmlFreeDoc)(doc);
    return ret;
}

static char *dup_or_null(const char *s, bool *oom)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        *oom = true;
    return d;
}

ic_xml_node *ic_xml_tree_clone(const ic_xml_node *node)
{
    if (!node)
        return NULL;
    bool oom = false;
    ic_xml_node *n = calloc(1, sizeof(*n));
    if (!n)
        return NULL;
    n->name = dup_or_null(node->name, &oom);
    n->text = dup_or_null(node->text, &oom);
    n->raw = dup_or_null(node->raw, &oom);
    if (node->nattrs && !oom) {
        n->attrs = calloc(node->nattrs, sizeof(*n->attrs));
        if (!n->attrs)
            oom = true;
        for (size_t i = 0; !oom && i < node->nattrs; i++) {
            n->attrs[i].name = dup_or_null(node->attrs[i].name, &oom);
            n->attrs[i].value = dup_or_null(node->attrs[i].value, &oom);
            n->nattrs = i + 1;
        }
    }
    if (node->nchildren && !oom) {
        n->children = calloc(node->nchildren, sizeof(*n->children));
        if (!n->children)
            oom = true;
        for (size_t i = 0; !oom && i < node->nchildren; i++) {
            n->children[i] = ic_xml_tree_clone(node->children[i]);
            if (!n->children[i])
                oom = true;
            else
                n->nchildren = i + 1;
        }
    }
    if (oom) {
        ic_xml_node_free(n);
        return NULL;
    }
    return n;
}

int ic_xml_tree_set_attr(ic_xml_node *node, const char *name, const char *value)
{
    char *v = strdup(value);
    if (!v)
        return -ENOMEM;
    for (size_t i = 0; i < node->nattrs; i++)
        if (!strcmp(node->attrs[i].name, name)) {
            free(node->attrs[i].value);
            node->attrs[i].value = v;
            return 0;
        }
    char *nm = strdup(name);
    ic_xml_attr *a = realloc(node->attrs, (node->nattrs + 1) * sizeof(*a));
    if (!nm || !a) {
        free(nm);
        free(v);
        if (a)
            node->attrs = a;
        return -ENOMEM;
    }
    node->attrs = a;
    a[node->nattrs].name = nm;
    a[node->nattrs].value = v;
    node->nattrs++;
    return 0;
}

void ic_xml_tree_del_attr(ic_xml_node *node, const char *name)
{
    for (size_t i = 0; i < node->nattrs; i++)
        if (!strcmp(node->attrs[i].name, name)) {
            free(node->attrs[i].name);
            free(node->attrs[i].value);
            memmove(&node->attrs[i], &node->attrs[i + 1],
                    (node->nattrs - i - 1) * sizeof(*node->attrs));
            node->nattrs--;
            return;
        }
}

ic_xml_node *ic_xml_tree_child(ic_xml_node *node, const char *name)
{
    for (size_t i = 0; node && i < node->nchildren; i++)
        if (node->children[i]->name && !strcmp(node->children[i]->name, name))
            return node->children[i];
    return NULL;
}

ic_xml_node *ic_xml_tree_child_make(ic_xml_node *node, const char *name)
{
    ic_xml_node *c = ic_xml_tree_child(node, name);
    if (c)
        return c;
    c = calloc(1, sizeof(*c));
    ic_xml_node **v = realloc(node->children, (node->nchildren + 1) * sizeof(*v));
    if (v)
        node->children = v;
    if (!c || !v || !(c->name = strdup(name))) {
        free(c);
        return NULL;
    }
    /* an element with children has no text of its own */
    free(node->text);
    node->text = NULL;
    v[node->nchildren++] = c;
    return c;
}

void ic_xml_tree_del_children(ic_xml_node *node, const char *name)
{
    size_t k = 0;
    for (size_t i = 0; i < node->nchildren; i++) {
        ic_xml_node *c = node->children[i];
        if (c->name && !strcmp(c->name, name))
            ic_xml_node_free(c);
        else
            node->children[k++] = c;
    }
    node->nchildren = k;
}

int ic_xml_tree_set_child_text(ic_xml_node *node, const char *name, const char *text)
{
    ic_xml_node *c = ic_xml_tree_child_make(node, name);
    char *t = strdup(text);
    if (!c || !t) {
        free(t);
        return -ENOMEM;
    }
    free(c->text);
    c->text = t;
    return 0;
}
