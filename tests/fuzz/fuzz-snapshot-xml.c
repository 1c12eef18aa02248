/*
 * fuzz-snapshot-xml.c - libFuzzer target: parse arbitrary bytes as a
 * libvirt <domainsnapshot> document in every mode, and format what parses.
 */
#include <stdint.h>
#include <stdlib.h>

#include "imgchain/xml.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const unsigned modes[] = { 0, IC_SNAPSHOT_PARSE_REDEFINE,
                                      IC_SNAPSHOT_PARSE_REDEFINE | IC_SNAPSHOT_PARSE_METADATA };
    for (size_t m = 0; m < sizeof(modes) / sizeof(modes[0]); m++) {
        ic_snapshot_def *def = NULL;
        ic_error *err = NULL;
        if (ic_snapshot_def_parse(&def, (const char *)data, size, modes[m], &err) < 0) {
            ic_error_free(err);
            continue;
        }
        char *xml = NULL;
        if (ic_snapshot_def_format(&xml, def, 0, &err) < 0)
            ic_error_free(err);
        free(xml);
        ic_snapshot_def_free(def);
    }
    return 0;
}
