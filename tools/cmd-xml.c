/*
 * cmd-xml.c - `imgchain xml`: libvirt snapshot documents from the shell.
 *
 * Design notes: a thin front end over imgchain/xml.h (see that header).
 *
 *   xml format [--redefine] [--metadata] [--secure] [--validate] FILE
 *       parse FILE ("-" = stdin) and print it as imgchain (and libvirt)
 *       format it.  --redefine parses as a redefinition (name, state and
 *       creationTime required; domain, parent, cookie kept); --metadata
 *       reads and prints the on-disk form (warning comment, <active>);
 *       --secure keeps passwords of the embedded domain.
 *   xml validate FILE
 *       RelaxNG check against libvirt's schema; exit 0 when valid.
 *   xml align --domain DOMAIN.xml [--redefine] [--secure] [--disk-only]
 *             [--offline] [--uniform-internal] [--default MODE] FILE
 *       align the snapshot's disks with the domain's and print the result.
 *
 * Exit codes: 0 ok, 1 the document is refused, 64 usage.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <imgchain/snapmeta.h>
#include <imgchain/xml.h>

#include "cli.h"
#include "cli-domain.h"


struct xml_opts {
    bool redefine, metadata, secure, validate;
    bool disk_only, offline, uniform_internal;
    const char *domain;
    const char *default_mode;
    const char *file;
};

/* Parses options shared by the subcommands; returns -1 when fine, else the
 * exit code. */
#define XML_FORMAT_USAGE "xml format [--redefine] [--metadata] [--secure] [--validate] FILE"
#define XML_VALIDATE_USAGE "xml validate FILE"
#define XML_ALIGN_USAGE                                                                        \
    "xml align [--domain DOMAIN.xml] [--redefine] [--secure] [--disk-only] [--offline]\n"     \
    "            [--uniform-internal] [--default no|internal|external|manual] FILE"

static bool is_help(const char *a)
{
    return !strcmp(a, "-h") || !strcmp(a, "--help");
}

/* Prints "usage: imgchain USAGE" on stdout: -h is a request, not an error. */
static int print_usage(const char *usage)
{
    printf("usage: imgchain %s\n", usage);
    return CLI_EXIT_OK;
}

static int parse_opts(struct xml_opts *o, const char *sub, const char *usage, int argc,
                      char **argv, bool align_opts)
{
    memset(o, 0, sizeof(*o));
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (is_help(a))
            return print_usage(usage);
        if (!strcmp(a, "--redefine"))
            o->redefine = true;
        else if (!strcmp(a, "--metadata") && !align_opts)
            o->metadata = true;
        else if (!strcmp(a, "--secure"))
            o->secure = true;
        else if (!strcmp(a, "--validate"))
            o->validate = true;
        else if (align_opts && !strcmp(a, "--disk-only"))
            o->disk_only = true;
        else if (align_opts && !strcmp(a, "--offline"))
            o->offline = true;
        else if (align_opts && !strcmp(a, "--uniform-internal"))
            o->uniform_internal = true;
        else if (align_opts && (!strcmp(a, "--domain") || !strcmp(a, "--default"))) {
            if (i + 1 >= argc)
                return cli_usage_error(sub, "%s needs a value", a);
            if (!strcmp(a, "--domain"))
                o->domain = argv[++i];
            else
                o->default_mode = argv[++i];
        } else if (a[0] == '-' && a[1]) {
            return cli_usage_error(sub, "unknown option '%s'", a);
        } else if (o->file) {
            return cli_usage_error(sub, "more than one FILE");
        } else {
            o->file = a;
        }
    }
    if (!o->file)
        return cli_usage_error(sub, "FILE missing");
    return -1;
}

static unsigned parse_flags(const struct xml_opts *o)
{
    unsigned f = 0;
    if (o->redefine || o->metadata)
        f |= IC_SNAPSHOT_PARSE_REDEFINE;
    if (o->metadata)
        f |= IC_SNAPSHOT_PARSE_METADATA;
    if (o->validate)
        f |= IC_SNAPSHOT_PARSE_VALIDATE;
    return f;
}

static int load_snapshot(ic_snapshot_def **def, const struct xml_opts *o)
{
    char *xml = NULL;
    size_t len = 0;
    int rc = cli_read_document(&xml, &len, o->file);
    if (rc != CLI_EXIT_OK)
        return rc;
    ic_error *err = NULL;
    int ret = ic_snapshot_def_parse(def, xml, len, parse_flags(o), &err);
    free(xml);
    if (ret < 0) {
        cli_errorf("%s: %s", o->file, ic_error_message(err));
        ic_error_free(err);
        return CLI_EXIT_FAIL;
    }
    return CLI_EXIT_OK;
}

static int print_def(const ic_snapshot_def *def, const struct xml_opts *o)
{
    char *text = NULL;
    ic_error *err = NULL;
    int ret;
    if (o->metadata)
        ret = ic_snapshot_def_format_metadata(&text, def, def->active == 1, &err);
    else
        ret = ic_snapshot_def_format(&text, def, o->secure ? IC_SNAPSHOT_FORMAT_SECURE : 0, &err);
    if (ret < 0)
        return cli_fail(err, CLI_EXIT_FAIL);
    fputs(text, stdout);
    free(text);
    return fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAIL;
}

static int xml_format(int argc, char **argv)
{
    struct xml_opts o;
    int rc = parse_opts(&o, "xml format", XML_FORMAT_USAGE, argc, argv, false);
    if (rc >= 0)
        return rc;
    ic_snapshot_def *def = NULL;
    if ((rc = load_snapshot(&def, &o)) != CLI_EXIT_OK)
        return rc;
    rc = print_def(def, &o);
    ic_snapshot_def_free(def);
    return rc;
}

static int xml_validate(int argc, char **argv)
{
    if (argc == 2 && is_help(argv[1]))
        return print_usage(XML_VALIDATE_USAGE);
    if (argc != 2 || (argv[1][0] == '-' && argv[1][1]))
        return cli_usage_error("xml validate", "expects exactly one FILE");
    char *xml = NULL;
    size_t len = 0;
    int rc = cli_read_document(&xml, &len, argv[1]);
    if (rc != CLI_EXIT_OK)
        return rc;
    ic_error *err = NULL;
    int ret = ic_snapshot_xml_validate(xml, len, &err);
    free(xml);
    if (ret < 0) {
        cli_errorf("%s: %s", argv[1], ic_error_message(err));
        ic_error_free(err);
        return CLI_EXIT_FAIL;
    }
    printf("%s validates\n", argv[1]);
    return CLI_EXIT_OK;
}

static int parse_mode(ic_snapshot_location *out, const char *s)
{
    static const ic_snapshot_location modes[] = {
        IC_SNAPSHOT_LOCATION_NO, IC_SNAPSHOT_LOCATION_INTERNAL,
        IC_SNAPSHOT_LOCATION_EXTERNAL, IC_SNAPSHOT_LOCATION_MANUAL,
    };
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++)
        if (!strcmp(ic_snapshot_location_name(modes[i]), s)) {
            *out = modes[i];
            return 0;
        }
    return -EINVAL;
}

static int xml_align(int argc, char **argv)
{
    struct xml_opts o;
    int rc = parse_opts(&o, "xml align", XML_ALIGN_USAGE, argc, argv, true);
    if (rc >= 0)
        return rc;
    ic_snapshot_align_options opts = IC_SNAPSHOT_ALIGN_OPTIONS_INIT;
    if (o.default_mode && parse_mode(&opts.default_mode, o.default_mode) < 0)
        return cli_usage_error("xml align", "--default takes no, internal, external or manual");
    ic_snapshot_def *def = NULL;
    ic_domain_def *dom = NULL;
    ic_error *err = NULL;
    if (o.domain) {
        char *xml = NULL;
        size_t len = 0;
        if ((rc = cli_read_document(&xml, &len, o.domain)) != CLI_EXIT_OK)
            return rc;
        int ret = ic_domain_def_parse(&dom, xml, len, &err);
        free(xml);
        if (ret < 0) {
            cli_errorf("%s: %s", o.domain, ic_error_message(err));
            ic_error_free(err);
            return CLI_EXIT_FAIL;
        }
    }
    if ((rc = load_snapshot(&def, &o)) != CLI_EXIT_OK) {
        ic_domain_def_free(dom);
        return rc;
    }
    if (!o.default_mode)
        opts.default_mode = ic_snapshot_align_default_mode(def, o.disk_only, o.offline);
    opts.uniform_internal = o.uniform_internal;
    opts.path_kind = ic_snapmeta_path_kind;
    if (ic_snapshot_def_align_disks(def, dom, &opts, &err) < 0) {
        cli_errorf("%s: %s", o.file, ic_error_message(err));
        ic_error_free(err);
        rc = CLI_EXIT_FAIL;
    } else {
        rc = print_def(def, &o);
    }
    ic_snapshot_def_free(def);
    ic_domain_def_free(dom);
    return rc;
}

static int cmd_xml(int argc, char **argv)
{
    if (argc < 2)
        return cli_usage_error("xml", "missing subcommand (format, validate or align)");
    if (is_help(argv[1]))
        return print_usage(XML_FORMAT_USAGE "\n  " XML_VALIDATE_USAGE "\n  " XML_ALIGN_USAGE);
    if (!strcmp(argv[1], "format"))
        return xml_format(argc - 1, argv + 1);
    if (!strcmp(argv[1], "validate"))
        return xml_validate(argc - 1, argv + 1);
    if (!strcmp(argv[1], "align"))
        return xml_align(argc - 1, argv + 1);
    return cli_usage_error("xml", "unknown subcommand '%s'", argv[1]);
}

CLI_COMMAND(cmd_xml_def, "xml", cmd_xml,
            XML_FORMAT_USAGE "\n  " XML_VALIDATE_USAGE "\n  " XML_ALIGN_USAGE)
