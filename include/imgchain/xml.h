/*
 * imgchain/xml.h - libvirt <domainsnapshot> and <domain> XML as plain structs.
 *
 * The library reads and writes libvirt's snapshot metadata documents
 * (libvirt's <domainsnapshot> format) without
 * exposing libxml2: every type here is our own.  What it offers:
 *
 *   ic_snapshot_def_parse()       document -> ic_snapshot_def, with libvirt's
 *                                 rules (REDEFINE, metadata form, schema)
 *   ic_snapshot_def_format()      ic_snapshot_def -> document, byte for byte
 *                                 as libvirt formats it (public, secure and
 *                                 on-disk metadata forms)
 *   ic_snapshot_xml_validate()    RelaxNG check against libvirt's schema
 *   ic_domain_def_parse()         the disks of a <domain> document
 *   ic_snapshot_def_align_disks() libvirt's disk alignment + default names
 *
 * Files are read by the caller (the CLI, or the library's metadata store):
 * this module never touches the file system, except that the
 * schema is loaded by libxml2 for validation.
 *
 * Messages: the rules are libvirt's and so are the messages (without
 * libvirt's trailing period), unprefixed: they describe the document, and
 * the caller adds the file name ("imgchain: snap.xml: disk snapshot image
 * path 'a.qcow2' must be absolute").
 *
 * Ownership: everything returned through a `**out` belongs to the caller and
 * is released with the matching ic_*_free(); every ic_*_free(NULL) is a
 * no-op.  Strings inside the structs are heap strings owned by the struct.
 */
#ifndef IMGCHAIN_XML_H
#define IMGCHAIN_XML_H

#include "common.h"
#include "error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* libvirt's virDomainSnapshotState; the numbering follows libvirt's enum. */
typedef enum ic_snapshot_state {
    IC_SNAPSHOT_STATE_NONE = 0,     /* not given (create) */
    IC_SNAPSHOT_STATE_RUNNING,
    IC_SNAPSHOT_STATE_BLOCKED,
    IC_SNAPSHOT_STATE_PAUSED,
    IC_SNAPSHOT_STATE_SHUTDOWN,
    IC_SNAPSHOT_STATE_SHUTOFF,
    IC_SNAPSHOT_STATE_CRASHED,
    IC_SNAPSHOT_STATE_PMSUSPENDED,  /* accepted by libvirt's parser, not its schema */
    IC_SNAPSHOT_STATE_DISK_SNAPSHOT,
} ic_snapshot_state;

/* Snapshot location of memory or of one disk (virDomainSnapshotLocation). */
typedef enum ic_snapshot_location {
    IC_SNAPSHOT_LOCATION_DEFAULT = 0,  /* not given */
    IC_SNAPSHOT_LOCATION_NO,
    IC_SNAPSHOT_LOCATION_INTERNAL,
    IC_SNAPSHOT_LOCATION_EXTERNAL,
    IC_SNAPSHOT_LOCATION_MANUAL,
} ic_snapshot_location;

/* Storage source type (virStorageType). */
typedef enum ic_storage_type {
    IC_STORAGE_NONE = 0,
    IC_STORAGE_FILE,
    IC_STORAGE_BLOCK,
    IC_STORAGE_DIR,
    IC_STORAGE_NETWORK,
    IC_STORAGE_VOLUME,
    IC_STORAGE_NVME,
    IC_STORAGE_VHOSTUSER,
} ic_storage_type;

/* Image format names libvirt knows (virStorageFileFormat). */
typedef enum ic_disk_format {
    IC_DISK_FORMAT_NONE = 0,
    IC_DISK_FORMAT_RAW,
    IC_DISK_FORMAT_DIR,
    IC_DISK_FORMAT_BOCHS,
    IC_DISK_FORMAT_CLOOP,
    IC_DISK_FORMAT_DMG,
    IC_DISK_FORMAT_ISO,
    IC_DISK_FORMAT_VPC,
    IC_DISK_FORMAT_VDI,
    IC_DISK_FORMAT_FAT,
    IC_DISK_FORMAT_VHD,
    IC_DISK_FORMAT_PLOOP,
    IC_DISK_FORMAT_COW,     /* formats from here on can have a backing file */
    IC_DISK_FORMAT_QCOW,
    IC_DISK_FORMAT_QCOW2,
    IC_DISK_FORMAT_QED,
    IC_DISK_FORMAT_VMDK,
} ic_disk_format;

/* Tri-state attribute value (virTristateBool). */
typedef enum ic_tristate {
    IC_TRISTATE_ABSENT = 0,
    IC_TRISTATE_YES,
    IC_TRISTATE_NO,
} ic_tristate;

/** Name of a state ("running"), or NULL when out of range. */
IC_EXTERN const char *ic_snapshot_state_name(ic_snapshot_state state);
/** Name of a location ("external"), or NULL when out of range. */
IC_EXTERN const char *ic_snapshot_location_name(ic_snapshot_location loc);
/** Name of a storage type ("block"), or NULL when out of range. */
IC_EXTERN const char *ic_storage_type_name(ic_storage_type type);
/** Name of a format ("qcow2"), or NULL when out of range. */
IC_EXTERN const char *ic_disk_format_name(ic_disk_format fmt);

/*
 * A generic element kept verbatim: the embedded <domain>, <inactiveDomain>,
 * <cookie> and the source children imgchain does not model (<seclabel>,
 * <encryption>, <auth>, ...).  Names carry their namespace prefix as written
 * ("qemu:commandline"); namespace declarations are attributes ("xmlns:qemu").
 */
typedef struct ic_xml_attr {
    char *name;
    char *value;
} ic_xml_attr;

typedef struct ic_xml_node {
    char *name;
    ic_xml_attr *attrs;           /* document order */
    size_t nattrs;
    char *text;                   /* text content of a leaf, else NULL */
    struct ic_xml_node **children;
    size_t nchildren;
    char *raw;                    /* if set: the subtree pre-serialized (domain
                                   * <metadata>, formatted by libxml2 as libvirt
                                   * does); name/attrs/children are then unused */
} ic_xml_node;

/** Frees @p node and its subtree; NULL is a no-op. */
IC_EXTERN void ic_xml_node_free(ic_xml_node *node);
/** The value of attribute @p name of @p node (borrowed), or NULL. */
IC_EXTERN const char *ic_xml_node_attr(const ic_xml_node *node, const char *name);
/** The first child element named @p name (borrowed), or NULL. */
IC_EXTERN const ic_xml_node *ic_xml_node_child(const ic_xml_node *node, const char *name);

/*
 * Generic trees as whole documents, and their editing (the domain store
 * keeps a <domain> this way, so that every element it does not model is
 * written back as it was read).  Edits keep attribute and child order: a
 * new attribute or child is appended, a replaced one keeps its place.
 */
/** Parses the document @p xml (@p len bytes) whose root element must be
 * @p root; comments and blank text between elements are dropped.
 * @return 0; -EINVAL malformed or another root; -ENOMEM. */
IC_EXTERN int ic_xml_tree_parse(ic_xml_node **out, const char *xml, size_t len,
                                const char *root, ic_error **errp);
/** Formats @p node as libvirt formats a <domain> (two-space indent, single
 * quotes, the root's id= dropped; without @p secure the passwd= of
 * <graphics> too), ending with a newline; heap string. */
IC_EXTERN int ic_xml_tree_format(char **out, const ic_xml_node *node, bool secure,
                                 ic_error **errp);
/** Deep copy; NULL on allocation failure. */
IC_EXTERN ic_xml_node *ic_xml_tree_clone(const ic_xml_node *node);
/** Sets (adds or replaces) attribute @p name; 0 or -ENOMEM. */
IC_EXTERN int ic_xml_tree_set_attr(ic_xml_node *node, const char *name, const char *value);
/** Removes attribute @p name if present. */
IC_EXTERN void ic_xml_tree_del_attr(ic_xml_node *node, const char *name);
/** The first child element named @p name (mutable), or NULL. */
IC_EXTERN ic_xml_node *ic_xml_tree_child(ic_xml_node *node, const char *name);
/** That child, appended empty when missing; NULL on allocation failure. */
IC_EXTERN ic_xml_node *ic_xml_tree_child_make(ic_xml_node *node, const char *name);
/** Removes every child element named @p name. */
IC_EXTERN void ic_xml_tree_del_children(ic_xml_node *node, const char *name);

/* One <host> of a network source. */
typedef struct ic_net_host {
    char *name;
    unsigned port;          /* 0 = not given */
    char *transport;        /* "unix", "rdma"; NULL for tcp (libvirt omits it) */
    char *socket;
} ic_net_host;

/* A <source> (+ the format from <driver type>) as libvirt's virStorageSource. */
typedef struct ic_storage_source {
    ic_storage_type type;
    ic_disk_format format;
    char *path;                 /* file=, dev=, or the network name= */
    /* network sources */
    char *protocol;             /* "nbd", "rbd", "gluster", ... */
    char *query;
    ic_tristate tls;
    ic_net_host *hosts;
    size_t nhosts;
    char *snapshot_name;        /* <snapshot name=> (rbd) */
    char *config_file;          /* <config file=> (rbd) */
    /* children kept verbatim, in document order (seclabel, encryption, ...) */
    ic_xml_node **extra;
    size_t nextra;
    /* <driver><metadata_cache><max_size> in bytes; 0 = not given */
    uint64_t metadata_cache_max_size;
    /* domain disks only: <backingStore>.  backing == NULL with
     * backing_terminated means an explicit empty <backingStore/>. */
    struct ic_storage_source *backing;
    bool backing_terminated;
} ic_storage_source;

/** Frees @p src and its backing chain; NULL is a no-op. */
IC_EXTERN void ic_storage_source_free(ic_storage_source *src);

/* ---- <domain> disks ---------------------------------------------------- */

typedef struct ic_domain_disk_def {
    ic_storage_type type;       /* <disk type=> */
    char *device;               /* "disk" (default), "cdrom", "floppy", "lun" */
    char *driver_name;          /* <driver name=> ("qemu") */
    ic_storage_source *src;     /* never NULL; src->format = <driver type=> */
    char *target;               /* <target dev=> (required) */
    char *bus;                  /* <target bus=> */
    ic_snapshot_location snapshot;  /* <disk snapshot=> */
    bool transient;
    bool readonly;
} ic_domain_disk_def;

typedef struct ic_domain_def {
    char *type;                 /* <domain type=> */
    char *name;
    char *uuid;
    ic_domain_disk_def *disks;  /* document order */
    size_t ndisks;
} ic_domain_def;

/**
 * Parses the parts of a libvirt <domain> document imgchain needs: type,
 * name, uuid and every <devices><disk>.  The root may also be named
 * <inactiveDomain> (snapshot form).
 * @param out receives the definition (caller frees with ic_domain_def_free)
 * @param xml document text, @p len bytes (need not be NUL-terminated)
 * Disks are returned in libvirt's order: document order, except that the
 * disks of one bus are kept sorted by target (as virDomainDiskInsert does).
 * @return 0; -EINVAL malformed XML, no type attribute, or a disk libvirt
 *         would refuse (missing or duplicate target, unknown type, device,
 *         format or snapshot mode); -ENOMEM.
 */
IC_EXTERN int ic_domain_def_parse(ic_domain_def **out, const char *xml, size_t len,
                                  ic_error **errp);
/** Frees @p def; NULL is a no-op. */
IC_EXTERN void ic_domain_def_free(ic_domain_def *def);
/** The disk whose target is @p name or, for a name starting with '/', whose
 * source is that path (when unambiguous); its index or -1. */
IC_EXTERN int ic_domain_def_disk_index(const ic_domain_def *def, const char *name);

/**
 * libvirt's ABI-stability check (a subset of virDomainDefCheckABIStability)
 * between the <domain> a revert switches to (@p target, a snapshot's) and
 * the domain as it is (@p source): virt type, maximum memory, maximum vCPU
 * count, OS type, architecture, machine type, and per device class the
 * device count and each device's type/model, bus and target.
 * @param why receives the first difference as libvirt words it ("Target
 *   domain disk count 2 does not match source 1"; heap string, free()), or
 *   NULL when the two are compatible
 * @return 0 (compatible or not: see @p why); -EINVAL not a <domain> or an
 *   unreadable <memory>/<vcpu>; -ENOMEM.
 */
IC_EXTERN int ic_domain_abi_check(const ic_xml_node *target, const ic_xml_node *source,
                                  char **why, ic_error **errp);
/** ic_domain_abi_check() over two documents (@p tlen / @p slen bytes). */
IC_EXTERN int ic_domain_abi_check_xml(const char *target, size_t tlen, const char *source,
                                      size_t slen, char **why, ic_error **errp);

/* ---- <domainsnapshot> -------------------------------------------------- */

typedef struct ic_snapshot_disk_def {
    char *name;                     /* target ("vda") or absolute path */
    ic_snapshot_location snapshot;  /* DEFAULT when not given */
    ic_storage_source *src;         /* never NULL; type FILE when not given */
    bool delete_in_progress;        /* <snapshotDeleteInProgress/> */
} ic_snapshot_disk_def;

typedef struct ic_snapshot_def {
    char *name;
    char *description;
    ic_snapshot_state state;
    long long creation_time;        /* seconds since the epoch; 0 = none */
    char *parent_name;
    ic_snapshot_location memory;
    char *memory_file;
    ic_snapshot_disk_def *disks;
    size_t ndisks;
    ic_snapshot_disk_def *revert_disks;
    size_t nrevert_disks;
    int active;                     /* metadata form: 1 current, 0 not; -1 unknown */
    ic_xml_node *domain;            /* full embedded <domain> (REDEFINE), or NULL */
    ic_domain_def *dom;             /* the disks of @domain, for alignment */
    char *domain_uuid;              /* uuid of the old <domain><uuid/></domain> form
                                     * or of @domain; formatted in the old form
                                     * when @domain is NULL */
    ic_xml_node *inactive_domain;   /* <inactiveDomain> (REDEFINE), or NULL */
    ic_xml_node *cookie;            /* <cookie> (REDEFINE, online states), or NULL */
} ic_snapshot_def;

/* Parse flags (libvirt's VIR_DOMAIN_SNAPSHOT_PARSE_*). */
#define IC_SNAPSHOT_PARSE_REDEFINE 0x1u  /* name, state, creationTime required;
                                          * parent, domain, cookie honoured */
#define IC_SNAPSHOT_PARSE_METADATA 0x2u  /* on-disk form: <active> required */
#define IC_SNAPSHOT_PARSE_VALIDATE 0x4u  /* RelaxNG-validate first */

/**
 * Parses a <domainsnapshot> document with libvirt's rules.  Without
 * REDEFINE, state, creationTime, parent, domain and cookie are ignored,
 * creationTime is set to now and a missing name becomes the creation time
 * in decimal seconds.  Unknown elements are ignored unless VALIDATE.
 * @param out receives the definition (caller frees with ic_snapshot_def_free)
 * @param xml the document, @p len bytes
 * @param flags IC_SNAPSHOT_PARSE_*
 * @return 0; -EINVAL the document is malformed, invalid against the schema
 *         (VALIDATE) or breaks one of libvirt's rules (the message says
 *         which); -ENOTSUP a construct libvirt refuses as unsupported
 *         ('manual' memory); -ENOENT/-EIO the schema could not be loaded;
 *         -ENOMEM.
 */
IC_EXTERN int ic_snapshot_def_parse(ic_snapshot_def **out, const char *xml, size_t len,
                                    unsigned flags, ic_error **errp);
/** Frees @p def; NULL is a no-op. */
IC_EXTERN void ic_snapshot_def_free(ic_snapshot_def *def);

/* Format flags (libvirt's VIR_DOMAIN_SNAPSHOT_FORMAT_*). */
#define IC_SNAPSHOT_FORMAT_SECURE   0x1u  /* keep passwords in the embedded domain */
#define IC_SNAPSHOT_FORMAT_METADATA 0x2u  /* add <active> (on-disk form) */
#define IC_SNAPSHOT_FORMAT_CURRENT  0x4u  /* with METADATA: <active>1</active> */

/**
 * Formats @p def as libvirt does: two-space indentation, single quotes,
 * libvirt's element order and escaping, ending with a newline.
 * @param out receives a NUL-terminated string (caller frees with free())
 * @param flags IC_SNAPSHOT_FORMAT_*
 * @return 0; -EINVAL @p def is not formattable (a disk without a source type
 *         name); -ENOMEM.
 */
IC_EXTERN int ic_snapshot_def_format(char **out, const ic_snapshot_def *def,
                                     unsigned flags, ic_error **errp);
/**
 * The complete content of a metadata file: libvirt's "AUTO-GENERATED FILE"
 * warning comment followed by the SECURE + METADATA form.
 * @param current whether this snapshot is the domain's current one
 * @return as ic_snapshot_def_format().
 */
IC_EXTERN int ic_snapshot_def_format_metadata(char **out, const ic_snapshot_def *def,
                                              bool current, ic_error **errp);

/** Where libvirt's snapshot schema is installed (Debian's libvirt0). */
#define IC_SNAPSHOT_SCHEMA_PATH "/usr/share/libvirt/schemas/domainsnapshot.rng"

/**
 * Validates a document against libvirt's RelaxNG schema for
 * <domainsnapshot> (IC_SNAPSHOT_SCHEMA_PATH, or $IMGCHAIN_SNAPSHOT_RNG when
 * set).  The compiled schema is cached for the life of the process.
 * @return 0 valid; -EINVAL not well-formed or not valid (the message gives
 *         libxml2's first complaint, e.g. "Element domainsnapshot has extra
 *         content: bogus"); -ENOENT the schema is not installed; -EIO the
 *         schema did not compile; -ENOMEM.
 */
IC_EXTERN int ic_snapshot_xml_validate(const char *xml, size_t len, ic_error **errp);

/* ---- disk alignment ---------------------------------------------------- */

/* What a path is on the host, for default external file names. */
typedef enum ic_path_kind {
    IC_PATH_MISSING = 0,
    IC_PATH_REGULAR,
    IC_PATH_BLOCK,
    IC_PATH_OTHER,
} ic_path_kind;

/* Reports what @path is; returns an ic_path_kind (never fails: anything
 * that cannot be inspected is IC_PATH_MISSING). */
typedef ic_path_kind (*ic_path_kind_fn)(const char *path, void *payload);

#define IC_SNAPSHOT_ALIGN_OPTIONS_VERSION 1
typedef struct ic_snapshot_align_options {
    unsigned version;
    /* mode of disks neither the request nor the domain disk decides
     * (libvirt's default_snapshot; see ic_snapshot_align_default_mode()) */
    ic_snapshot_location default_mode;
    /* qemu internal snapshots: every disk must be internal unless both the
     * request and the domain disk say no */
    bool uniform_internal;
    /* inspects domain disk sources before naming an external file after
     * them; NULL refuses to generate names (-EINVAL).  The library's own
     * probe is ic_snapmeta_path_kind() (imgchain/snapmeta.h). */
    ic_path_kind_fn path_kind;
    void *payload;
} ic_snapshot_align_options;

#define IC_SNAPSHOT_ALIGN_OPTIONS_INIT \
    { IC_SNAPSHOT_ALIGN_OPTIONS_VERSION, IC_SNAPSHOT_LOCATION_INTERNAL, false, NULL, NULL }

/**
 * libvirt's run default for disks nobody chose a mode for: external with
 * @p disk_only, with external memory, or when @p offline and any requested
 * disk is external; internal otherwise.
 */
IC_EXTERN ic_snapshot_location ic_snapshot_align_default_mode(const ic_snapshot_def *def,
                                                              bool disk_only, bool offline);

/**
 * Aligns the snapshot's disks with the domain's, as libvirt's
 * virDomainSnapshotAlignDisks: requested disks are matched by target or
 * unambiguous source path and renamed to the target, the others are added
 * with the domain disk's snapshot= or @p opts->default_mode (empty drives:
 * no), the list ends in domain order, and external disks without a file
 * get "<source minus its last suffix>.<snapshot name>".
 * @param def the snapshot, rewritten in place (on failure it is unchanged)
 * @param domain the domain to align with; NULL uses @p def->dom
 * @param opts NULL for IC_SNAPSHOT_ALIGN_OPTIONS_INIT
 * @return 0; -EINVAL no domain, too many disks, an unknown or twice-named
 *         disk, a mode conflict, no name can be generated (block device,
 *         no source, not a regular file, collision, no path probe); -ENOMEM.
 */
IC_EXTERN int ic_snapshot_def_align_disks(ic_snapshot_def *def, const ic_domain_def *domain,
                                          const ic_snapshot_align_options *opts,
                                          ic_error **errp);

#ifdef __cplusplus
}
#endif
#endif
