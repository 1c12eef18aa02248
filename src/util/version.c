/*
 * version.c - the library's version string.
 */
#include "imgchain/common.h"

const char *ic_version(void)
{
    return IC_VERSION_STRING;
}
