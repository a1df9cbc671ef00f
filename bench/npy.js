// bench/npy.js: a small NumPy .npy reader and writer for the ONNX Runtime peer scripts.
//
// Reads format versions 1.0, 2.0 and 3.0, C order, little endian (or byte-order free),
// element types float32, float64, int64, int32, uint8 and bool, plus int8, int16, uint16,
// uint32 and uint64 (same code path). Fortran order, big endian, structured dtypes and
// object arrays are refused with an error naming the file and the header.
// Returns { type, dims, data } where type is the ONNX Runtime tensor type name
// ('float32', 'int64', 'bool', ...) and data a fresh, aligned typed array (BigInt64Array
// for int64, Uint8Array for bool).
'use strict';

const fs = require('fs');

// descr (without the byte-order character) -> [ORT type, typed array constructor]
const DESCR = {
  f4: ['float32', Float32Array],
  f8: ['float64', Float64Array],
  i8: ['int64', BigInt64Array],
  i4: ['int32', Int32Array],
  i2: ['int16', Int16Array],
  i1: ['int8', Int8Array],
  u8: ['uint64', BigUint64Array],
  u4: ['uint32', Uint32Array],
  u2: ['uint16', Uint16Array],
  u1: ['uint8', Uint8Array],
  b1: ['bool', Uint8Array],
};

const TYPE_DESCR = {};
for (const [d, [t]] of Object.entries(DESCR)) TYPE_DESCR[t] = d;

function fail(file, msg) {
  throw new Error(`${file}: ${msg}`);
}

// Parses the header dict: {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
function parseHeader(file, text) {
  const descr = /'descr'\s*:\s*'([^']*)'/.exec(text);
  const fortran = /'fortran_order'\s*:\s*(True|False)/.exec(text);
  const shape = /'shape'\s*:\s*\(([^)]*)\)/.exec(text);
  if (!descr || !fortran || !shape) fail(file, `not a plain .npy header: ${text.trim()}`);
  if (fortran[1] === 'True') fail(file, 'Fortran-order arrays are not supported; save in C order');
  const dims = shape[1]
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0)
    .map((s) => {
      if (!/^\d+$/.test(s)) fail(file, `bad dimension '${s}' in shape (${shape[1]})`);
      return Number(s);
    });
  return { descr: descr[1], dims };
}

function readNpy(file) {
  const buf = fs.readFileSync(file);
  if (buf.length < 10 || buf.readUInt8(0) !== 0x93 || buf.toString('latin1', 1, 6) !== 'NUMPY') {
    fail(file, 'not a .npy file (no \\x93NUMPY magic)');
  }
  const major = buf.readUInt8(6);
  let hlen;
  let hstart;
  if (major === 1) {
    hlen = buf.readUInt16LE(8);
    hstart = 10;
  } else if (major === 2 || major === 3) {
    if (buf.length < 12) fail(file, 'truncated header');
    hlen = buf.readUInt32LE(8);
    hstart = 12;
  } else {
    fail(file, `unsupported .npy format version ${major}`);
  }
  if (hstart + hlen > buf.length) fail(file, 'truncated header');
  const header = buf.toString(major === 3 ? 'utf8' : 'latin1', hstart, hstart + hlen);
  const { descr, dims } = parseHeader(file, header);
  const order = descr[0];
  const key = descr.slice(1);
  if (!DESCR[key] || !'<|='.includes(order)) {
    fail(file, `element type '${descr}' is not supported (little-endian ${Object.keys(DESCR).join(', ')})`);
  }
  if (order === '=' && !isLittleEndian()) fail(file, 'native byte order on a big-endian host');
  const [type, Ctor] = DESCR[key];
  const count = dims.reduce((a, b) => a * b, 1);
  const bytes = count * Ctor.BYTES_PER_ELEMENT;
  const off = hstart + hlen;
  if (buf.length - off !== bytes) {
    fail(file, `shape (${dims.join(', ')}) of ${descr} needs ${bytes} data bytes, the file has ${buf.length - off}`);
  }
  const data = new Ctor(count);
  Buffer.from(data.buffer).set(buf.subarray(off, off + bytes));
  return { type, dims, data };
}

function isLittleEndian() {
  return new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
}

// Writes a tensor (ORT type name, dims, typed array) as a version 1.0 .npy file.
function writeNpy(file, type, dims, data) {
  const key = TYPE_DESCR[type];
  if (!key) throw new Error(`${file}: cannot write element type '${type}' as .npy`);
  const order = key === 'u1' || key === 'i1' || key === 'b1' ? '|' : '<';
  const shape = dims.length === 1 ? `(${dims[0]},)` : `(${dims.join(', ')})`;
  let header = `{'descr': '${order}${key}', 'fortran_order': False, 'shape': ${shape}, }`;
  // Pad with spaces so that the data starts at a multiple of 64 bytes; end with '\n'.
  const total = 10 + header.length + 1;
  header += ' '.repeat((64 - (total % 64)) % 64) + '\n';
  const head = Buffer.alloc(10);
  head.writeUInt8(0x93, 0);
  head.write('NUMPY', 1, 'latin1');
  head.writeUInt8(1, 6);
  head.writeUInt8(0, 7);
  head.writeUInt16LE(header.length, 8);
  const body = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  fs.writeFileSync(file, Buffer.concat([head, Buffer.from(header, 'latin1'), body]));
}

module.exports = { readNpy, writeNpy };
