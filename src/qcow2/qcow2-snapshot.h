/*
 * qcow2-snapshot.h - internal snapshots of the qcow2 driver (declarations
 * shared with qcow2.c's driver table and qcow2-check.c).
 */
#ifndef IC_QCOW2_SNAPSHOT_H
#define IC_QCOW2_SNAPSHOT_H

#include <stdint.h>
#include "qcow2.h"

/* Driver ops (driver.h contracts); list and load_tmp stay in qcow2.c. */
int qcow2_snapshot_create(struct ic_image *img, const ic_snapshot_info *info, ic_error **errp);
int qcow2_snapshot_goto(struct ic_image *img, const char *id_or_name, ic_error **errp);
int qcow2_snapshot_delete(struct ic_image *img, const char *id, const char *name,
                          ic_error **errp);

/* Serialized size of the table for snapshots[0..n) (entries padded to 8),
 * as qcow2_snapshot_serialize() writes it. */
uint64_t qcow2_snapshot_table_bytes(const struct qcow2_snapshot *sn, uint32_t n);
/* Serializes the table into @buf (qcow2_snapshot_table_bytes() bytes). */
void qcow2_snapshot_serialize(const struct qcow2_state *s, const struct qcow2_snapshot *sn,
                              uint32_t n, uint64_t cur_size, uint8_t *buf);
/* Rewrites the snapshot table crash-safely from s->snapshots (new table,
 * flush, one 12-byte header write at offset 60, flush, free the old one);
 * used by check -r all after it dropped or completed entries. */
int qcow2_snapshot_rewrite_table(struct ic_image *img, ic_error **errp);

#endif
