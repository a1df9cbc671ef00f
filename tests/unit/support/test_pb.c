/* tests/unit/support/test_pb.c: the protobuf encoder of test_pb.h. */
#include "test_pb.h"

#include <string.h>

void pb_byte(struct pb *b, uint8_t v)
{
    if (b->len < sizeof b->data) b->data[b->len++] = v;
}

void pb_varint(struct pb *b, uint64_t v)
{
    while (v >= 0x80) {
        pb_byte(b, (uint8_t)(v | 0x80));
        v >>= 7;
    }
    pb_byte(b, (uint8_t)v);
}

void pb_int(struct pb *b, unsigned field, int64_t v)
{
    pb_varint(b, (uint64_t)field << 3);
    pb_varint(b, (uint64_t)v);
}

void pb_bytes(struct pb *b, unsigned field, const void *p, size_t n)
{
    pb_varint(b, (uint64_t)field << 3 | 2);
    pb_varint(b, n);
    for (size_t i = 0; i < n; i++) pb_byte(b, ((const uint8_t *)p)[i]);
}

void pb_str(struct pb *b, unsigned field, const char *s)
{
    pb_bytes(b, field, s, strlen(s));
}
void pb_msg(struct pb *b, unsigned field, const struct pb *m)
{
    pb_bytes(b, field, m->data, m->len);
}

void pb_float(struct pb *b, unsigned field, float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    pb_varint(b, (uint64_t)field << 3 | 5);
    for (int i = 0; i < 4; i++) pb_byte(b, (uint8_t)(u >> (8 * i)));
}
