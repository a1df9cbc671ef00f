/* onnx.h: ONNX protobuf <-> kiln IR and values. The only place that knows protobuf.
 *
 * The wire decoder is kiln's own (pbwire.c): bounded, zero-copy, no allocation per field;
 * docs/DEPENDENCIES.md says why it is not protobuf-c or nanopb.
 */
#ifndef KILN_ONNX_H
#define KILN_ONNX_H

#include "ir/ir.h"

/* Decodes a ModelProto from buf[0..len) into m, whose arena is ready and whose `map` holds
 * the bytes (buf points into m->map.data, which stays mapped for the model's lifetime).
 * External data is resolved relative to m->dir (NULL refuses it). Tensor data is borrowed
 * from buf where it is little-endian and suitably aligned, else copied into the arena.
 * Fails with KILN_E_INVALID_MODEL and a message naming the field / tensor / node. */
KILN_NODISCARD kiln_status kiln_onnx_load(struct kiln_model *m, const uint8_t *buf, size_t len,
                                          kiln_err *err);

/* Decodes a TensorProto / SequenceProto / OptionalProto into a new value (owning all its
 * memory). kind 0 guesses (see kiln_value_read_file). */
KILN_NODISCARD kiln_status kiln_onnx_decode_value(const uint8_t *buf, size_t len, kiln_value_kind kind,
                                                  struct kiln_value **out, kiln_err *err);

/* Encodes a value as TensorProto / SequenceProto / OptionalProto into b (name may be NULL). */
KILN_NODISCARD kiln_status kiln_onnx_encode_value(const struct kiln_value *v, const char *name,
                                                  struct kiln_buf *b, kiln_err *err);

/* The external data location that names an engine file's own weight section. */
#define KILN_ENGINE_DATA_LOCATION "@engine"

/* Decodes the ModelProto section of an engine file (buf[0..len), copied) whose external data
 * lies in data[0..data_len) (borrowed: it must outlive the model). */
KILN_NODISCARD kiln_status kiln_onnx_load_engine(const uint8_t *buf, size_t len, const uint8_t *data,
                                                 size_t data_len, struct kiln_model **out, kiln_err *err);

/* Writes m as ModelProto bytes into a new buffer *buf (free with kiln_free), each numeric
 * tensor of at least `threshold` bytes going instead to the open file fd at the next
 * 64-byte-aligned offset, its external data naming KILN_ENGINE_DATA_LOCATION with offsets
 * counted from the fd's position at the call (*data_len: the bytes written to fd). */
KILN_NODISCARD kiln_status kiln_onnx_write_engine(const struct kiln_model *m, int fd, const char *path,
                                                  size_t threshold, void **buf, size_t *len,
                                                  uint64_t *data_len, kiln_err *err);

#endif
