/*
 * qcow2-check.h - qcow2 consistency check and repair (the driver's check op).
 */
#ifndef IC_QCOW2_CHECK_H
#define IC_QCOW2_CHECK_H

#include "qcow2.h"

/* driver.h contract: 0 when the scan completed (findings in @res), -errno
 * on internal failure.  @fix: IC_FIX_LEAKS, IC_FIX_ERRORS, IC_CHECK_DRY_RUN. */
int qcow2_check(struct ic_image *img, unsigned fix, ic_check_report_fn report, void *payload,
                ic_check_result *res, ic_error **errp);

#endif
