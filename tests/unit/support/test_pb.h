/* tests/unit/support/test_pb.h: a tiny protobuf encoder for tests that write ModelProto
 * bytes by hand (test_check.c; test_model.h builds on it).
 *
 * struct pb is a fixed buffer of 16 KiB; bytes past it are dropped, which makes the model
 * fail to load: a test failure, not a crash. Start one zeroed (`struct pb b = {0};`).
 */
#ifndef KILN_TEST_PB_H
#define KILN_TEST_PB_H

#include <stddef.h>
#include <stdint.h>

struct pb {
    uint8_t data[16384];
    size_t len;
};

void pb_byte(struct pb *b, uint8_t v);
void pb_varint(struct pb *b, uint64_t v);
/* A varint field. */
void pb_int(struct pb *b, unsigned field, int64_t v);
/* A length-delimited field of p[0..n). */
void pb_bytes(struct pb *b, unsigned field, const void *p, size_t n);
void pb_str(struct pb *b, unsigned field, const char *s);
/* m's bytes as a length-delimited field. */
void pb_msg(struct pb *b, unsigned field, const struct pb *m);
/* A fixed32 field holding f (little-endian). */
void pb_float(struct pb *b, unsigned field, float f);

#endif
