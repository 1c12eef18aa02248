/*
 * cmd-map.c - `imgchain map`: the guest-to-host mapping of an image chain,
 * as qemu-img 7.2 map prints it.
 *
 * Design notes:
 *  1. Entries come from ic_image_block_status() in queries of at most
 *     MAP_QUERY_MAX bytes (qemu-img uses 1 GiB) and are merged exactly as
 *     qemu-img's entry_mergeable(): same depth, present, zero, data, file
 *     and, when an offset is known, host offsets contiguous.
 *  2. depth for a range that reads as zeroes because a backing file is
 *     shorter than its overlay: qemu reports the overlay whose backing file
 *     ends (its block status says ZERO there); the library reports the
 *     short layer itself, so map_status() moves it one layer up.
 *  3. JSON: each entry is printed with qemu-img 7.2's format string, byte
 *     for byte, on its own line inside "[ ]", streamed, so a map of a huge
 *     image needs no memory for the whole list.  Human: "Offset Length
 *     Mapped to File" rows for data only; a
 *     data range without a host offset (compressed, external) is an error,
 *     as in qemu-img.
 *  4. --start-offset / --max-length bound the range as qemu-img does
 *     (length = min(start + max, size)).  -l loads an internal snapshot.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <imgchain/chain.h>

#include "cli-util.h"

/* Longest block-status query (qemu-img map uses 1 GiB). */
#define MAP_QUERY_MAX ((uint64_t)1 << 30)

struct map_entry {
    uint64_t start, length, offset;
    unsigned depth;
    bool present, zero, data, has_offset;
    const char *filename; /* borrowed from the chain, valid while it is open */
};

static int map_status(ic_image *img, uint64_t off, uint64_t len, struct map_entry *e,
                      ic_error **errp)
{
    ic_block_status st;
    int ret = ic_image_block_status(img, NULL, off, len, &st, errp);
    if (ret < 0)
        return ret;
    unsigned depth = st.depth;
    if (!(st.flags & IC_BS_ALLOCATED) && depth > 0) {
        ic_image *l = img;
        for (unsigned i = 0; i < depth && l; i++)
            l = ic_image_backing(l);
        if (l && off >= ic_image_size(l))
            depth--;
    }
    *e = (struct map_entry){
        .start = off,
        .length = st.length,
        .depth = depth,
        .present = (st.flags & IC_BS_ALLOCATED) != 0,
        .zero = (st.flags & IC_BS_ZERO) != 0,
        .data = (st.flags & IC_BS_DATA) != 0,
        .has_offset = (st.flags & IC_BS_OFFSET_VALID) != 0,
        .offset = st.host_offset,
        .filename = (st.flags & IC_BS_OFFSET_VALID) ? st.filename : NULL,
    };
    return 0;
}

static bool mergeable(const struct map_entry *a, const struct map_entry *b)
{
    if (a->length == 0)
        return false;
    if (a->zero != b->zero || a->data != b->data || a->depth != b->depth ||
        a->present != b->present || a->has_offset != b->has_offset)
        return false;
    if ((a->filename == NULL) != (b->filename == NULL) ||
        (a->filename && strcmp(a->filename, b->filename)))
        return false;
    if (a->has_offset && a->offset + a->length != b->offset)
        return false;
    return true;
}

/* Prints one entry; @next (may be NULL) is adjusted as qemu does for the
 * human form.  Returns -1 on a human-form error. */
static int dump_entry(bool json, const struct map_entry *e, struct map_entry *next)
{
    if (json) {
        /* the fields, order and spacing of qemu-img 7.2's dump_map_entry,
         * printed directly (no object built per entry) */
        printf("{ \"start\": %" PRIu64 ", \"length\": %" PRIu64 ", \"depth\": %d,"
               " \"present\": %s, \"zero\": %s, \"data\": %s", e->start, e->length,
               (int)e->depth, e->present ? "true" : "false", e->zero ? "true" : "false",
               e->data ? "true" : "false");
        if (e->has_offset)
            printf(", \"offset\": %" PRIu64, e->offset);
        fputs("}", stdout);
        if (next)
            fputs(",\n", stdout);
        return 0;
    }
    if (e->data && !e->has_offset) {
        cli_errorf("File contains external, encrypted or compressed clusters.");
        return -1;
    }
    if (e->data && !e->zero) {
        char a[24], b[24], c[24];
        /* qemu prints with "%#-16" PRIx64: "0" for zero, "0x..." otherwise */
        snprintf(a, sizeof(a), "%#" PRIx64, e->start);
        snprintf(b, sizeof(b), "%#" PRIx64, e->length);
        snprintf(c, sizeof(c), "%#" PRIx64, e->has_offset ? e->offset : 0);
        printf("%-16s%-16s%-16s%s\n", a, b, c, e->filename ? e->filename : "");
    }
    /* The human form ignores 0 / ZERO / ZERO|DATA differences; normalise
     * the next entry so more of it merges (qemu-img does the same). */
    if (next && (!next->data || next->zero)) {
        next->data = false;
        next->zero = true;
    }
    return 0;
}

static int run_map(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "output", required_argument, NULL, CLI_OPT_OUTPUT },
        { "start-offset", required_argument, NULL, 's' },
        { "max-length", required_argument, NULL, 'm' },
        { "force-share", no_argument, NULL, 'U' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt = NULL;
    bool json = false, share = false, have_max = false;
    uint64_t start = 0, max_len = 0;
    struct cli_snapshot_arg snap = { 0 };
    bool have_snap = false;
    int c, rc;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":f:l:Uh", longopts, NULL)) != -1) {
        switch (c) {
        case 'f':
            fmt = optarg;
            break;
        case 'U':
            share = true;
            break;
        case 's':
            if (cli_parse_size("map", "--start-offset", optarg, &start))
                goto usage;
            break;
        case 'm':
            if (cli_parse_size("map", "--max-length", optarg, &max_len))
                goto usage;
            have_max = true;
            break;
        case 'l':
            if (have_snap)
                cli_snapshot_arg_free(&snap);
            if ((rc = cli_parse_snapshot_arg("map", optarg, &snap)) != 0) {
                cli_snapshot_arg_free(&snap);
                return rc;
            }
            have_snap = true;
            break;
        case CLI_OPT_OUTPUT:
            if (cli_parse_output("map", optarg, &json))
                goto usage;
            break;
        case 'h':
            cli_snapshot_arg_free(&snap);
            printf("usage: imgchain map [-f FMT] [--output=human|json] [--start-offset=OFF] "
                   "[--max-length=LEN] [-l SNAPSHOT] [-U] FILE\n");
            return CLI_EXIT_OK;
        case ':':
            cli_snapshot_arg_free(&snap);
            return cli_usage_error("map", "option '%s' needs an argument", argv[optind - 1]);
        default:
            cli_snapshot_arg_free(&snap);
            return cli_usage_error("map", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind != argc - 1) {
        cli_snapshot_arg_free(&snap);
        return cli_usage_error("map", argc - optind < 1 ? "missing FILE" : "too many arguments");
    }
    ic_image *img = NULL;
    rc = cli_open_image(&img, argv[optind], fmt, share ? IC_OPEN_FORCE_SHARE : 0);
    if (rc) {
        cli_snapshot_arg_free(&snap);
        return rc;
    }
    ic_error *err = NULL;
    if (have_snap) {
        int ret = snap.id_or_name
                      ? ic_image_snapshot_load_tmp(img, snap.id_or_name, NULL, true, &err)
                      : ic_image_snapshot_load_tmp(img, snap.id, snap.name, false, &err);
        cli_snapshot_arg_free(&snap);
        if (ret < 0) {
            ic_image_close(img);
            return cli_fail(err, CLI_EXIT_FAIL);
        }
    }
    uint64_t length = ic_image_size(img);
    if (have_max && start + max_len >= start && start + max_len < length)
        length = start + max_len;

    if (json)
        putchar('[');
    else
        printf("%-16s%-16s%-16s%s\n", "Offset", "Length", "Mapped to", "File");
    rc = CLI_EXIT_OK;
    struct map_entry curr = { .start = start, .length = 0 }, next;
    while (curr.start + curr.length < length) {
        uint64_t off = curr.start + curr.length;
        uint64_t n = length - off < MAP_QUERY_MAX ? length - off : MAP_QUERY_MAX;
        if (map_status(img, off, n, &next, &err) < 0) {
            rc = cli_fail(err, CLI_EXIT_FAIL);
            break;
        }
        if (mergeable(&curr, &next)) {
            /* as qemu: the merged entry keeps the first one's offset */
            next.start = curr.start;
            next.offset = curr.offset;
            next.length += curr.length;
            curr = next;
            continue;
        }
        if (curr.length > 0 && dump_entry(json, &curr, &next) < 0) {
            rc = CLI_EXIT_FAIL;
            break;
        }
        curr = next;
    }
    if (rc == CLI_EXIT_OK && curr.length > 0 && dump_entry(json, &curr, NULL) < 0)
        rc = CLI_EXIT_FAIL;
    if (json)
        puts("]");
    ic_image_close(img);
    if (fflush(stdout) != 0) {
        cli_errorf("writing the output failed");
        return CLI_EXIT_FAIL;
    }
    return rc;
usage:
    cli_snapshot_arg_free(&snap);
    return CLI_EXIT_USAGE;
}

CLI_COMMAND(cmd_map, "map", run_map,
            "map [-f FMT] [--output=human|json] [--start-offset=OFF] [--max-length=LEN] "
            "[-l SNAPSHOT] [-U] FILE")
