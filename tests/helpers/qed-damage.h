/*
 * qed-damage.h - a test helper that damages QED image files on purpose
 * (qemu-iotests' poke_file for QED), so check and repair can be tested
 * against qemu-img check.
 *
 * Every function works on a closed image file by path, returns 0 or -errno,
 * and touches only the bytes it names.
 */
#ifndef IC_TEST_QED_DAMAGE_H
#define IC_TEST_QED_DAMAGE_H

#include <stdbool.h>
#include <stdint.h>

struct qd_info {
    uint32_t cluster_size;
    uint32_t table_size;    /* clusters per table */
    uint32_t header_size;   /* clusters */
    uint64_t features;
    uint64_t l1_offset;
    uint64_t image_size;
    uint64_t file_size;
};

int qd_peek_le64(const char *path, uint64_t off, uint64_t *v);
int qd_poke_le64(const char *path, uint64_t off, uint64_t v);
int qd_poke_le32(const char *path, uint64_t off, uint32_t v);
/* Parses the header fields the other helpers need. */
int qd_read_info(const char *path, struct qd_info *out);
/* Sets or clears the NEED_CHECK feature bit. */
int qd_set_need_check(const char *path, bool on);
/* L1 entry @index := @value. */
int qd_set_l1(const char *path, uint32_t index, uint64_t value);
/* File offset of the L2 entry that maps guest offset @guest (-ENOENT when
 * its L2 table is not allocated). */
int qd_l2_entry_addr(const char *path, uint64_t guest, uint64_t *addr);
/* Value of the L2 entry for @guest. */
int qd_get_l2(const char *path, uint64_t guest, uint64_t *value);
/* L2 entry for @guest := @value. */
int qd_set_l2(const char *path, uint64_t guest, uint64_t value);
/* Appends @n clusters of junk at the end of the file (leaked clusters). */
int qd_append_clusters(const char *path, unsigned n);
/* Makes @guest_b's L2 entry point at @guest_a's data cluster: one cluster
 * referenced twice (and @guest_b's old cluster leaked). */
int qd_double_reference(const char *path, uint64_t guest_a, uint64_t guest_b);

#endif
