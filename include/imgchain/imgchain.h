/*
 * imgchain/imgchain.h - umbrella header.
 */
#ifndef IMGCHAIN_IMGCHAIN_H
#define IMGCHAIN_IMGCHAIN_H

#include "common.h"
#include "error.h"
#include "util.h"
#include "sys/io.h"
#include "image.h"
#include "chain.h"
#include "chain-edit.h"
#include "snapshot.h"
#include "bitmap.h"
#include "snapmeta.h"
#include "xml.h"
#include "domain.h"

#endif
