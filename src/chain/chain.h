/*
 * chain.h - what the chain module's files share: the image layer's private
 * surface (opening an image is src/image/image-open.c).
 */
#ifndef IC_CHAIN_CHAIN_H
#define IC_CHAIN_CHAIN_H

#include "image/image.h"

#endif
