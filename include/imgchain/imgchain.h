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

#endif
