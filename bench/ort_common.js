// bench/ort_common.js: what bench/ort_bench.js and bench/ort_run.js share: finding
// onnxruntime-node (installed by scripts/install-peers.sh), option parsing, session options,
// and the inputs (read from .npy files or generated).
'use strict';

const fs = require('fs');
const path = require('path');
const { readNpy } = require('./npy');

const ROOT = path.resolve(__dirname, '..');

class UsageError extends Error {}

function peersDir() {
  return process.env.KILN_PEERS_DIR || path.join(ROOT, 'build', 'peers');
}

// Loads onnxruntime-node from the peers folder; a clear message when it is not installed.
function loadOrt() {
  const dir = path.join(peersDir(), 'node_modules', 'onnxruntime-node');
  if (!fs.existsSync(dir)) {
    throw new Error(`onnxruntime-node is not installed in ${peersDir()}; run 'sh scripts/install-peers.sh'`);
  }
  const ort = require(dir);
  ort.version = require(path.join(dir, 'package.json')).version;
  return ort;
}

// Parses argv against a table { '--name': 'int' | 'float' | 'string' | 'list' | 'flag' }.
// Values come as the next argument or after '=' (--threads=2), as in the kiln command.
// Returns { positional: [...], opts: { name: value } } (lists as arrays).
function parseArgs(argv, table) {
  const positional = [];
  const opts = {};
  for (let i = 0; i < argv.length; i++) {
    let a = argv[i];
    if (!a.startsWith('--') || a === '--') {
      positional.push(a);
      continue;
    }
    let val;
    const eq = a.indexOf('=');
    if (eq > 0) {
      val = a.slice(eq + 1);
      a = a.slice(0, eq);
    }
    const kind = table[a];
    if (!kind) throw new UsageError(`unknown option '${a}'`);
    const key = a.slice(2).replace(/-/g, '_');
    if (kind === 'flag') {
      if (val !== undefined) throw new UsageError(`${a} takes no value`);
      opts[key] = true;
      continue;
    }
    if (val === undefined) {
      if (i + 1 >= argv.length) throw new UsageError(`${a} needs a value`);
      val = argv[++i];
    }
    if (kind === 'int') {
      if (!/^\d+$/.test(val)) throw new UsageError(`${a} takes a non-negative integer; got '${val}'`);
      opts[key] = Number(val);
    } else if (kind === 'float') {
      const f = Number(val);
      if (val === '' || !Number.isFinite(f) || f < 0) {
        throw new UsageError(`${a} takes a non-negative number of seconds; got '${val}'`);
      }
      opts[key] = f;
    } else if (kind === 'list') {
      (opts[key] = opts[key] || []).push(val);
    } else {
      opts[key] = val;
    }
  }
  return { positional, opts };
}

// 'NAME=VALUE' items -> Map(name -> value), refusing duplicates and a missing '='. As in
// kiln, --input's name ends at the first '=' and --shape's at the last.
function namedItems(option, items) {
  const m = new Map();
  for (const it of items || []) {
    const eq = option === '--shape' ? it.lastIndexOf('=') : it.indexOf('=');
    if (eq <= 0 || eq === it.length - 1) throw new UsageError(`${option} takes NAME=VALUE; got '${it}'`);
    const name = it.slice(0, eq);
    if (m.has(name)) throw new UsageError(`${option} '${name}' is given twice`);
    m.set(name, it.slice(eq + 1));
  }
  return m;
}

function parseDims(name, text) {
  if (text === '' || text === 'scalar') return [];
  const dims = text.split('x').map((d) => {
    if (!/^\d+$/.test(d)) throw new UsageError(`--shape ${name}=${text}: dims are D0xD1x..., non-negative integers`);
    return Number(d);
  });
  return dims;
}

// ONNX Runtime session options used by both scripts: intra-op threads as given (0 = ORT's
// default, one per physical core), one inter-op thread, every graph optimization, and
// sequential execution.
function sessionOptions(threads) {
  return {
    executionProviders: ['cpu'],
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
  };
}

// The generator for inputs not given as files, the same as `kiln bench`'s
// (tools/cli/cmd_bench.c), so that both engines see the same values even without files:
// splitmix64 with state 0x6B696C6E62656E63 ("kilnbenc") + K for the K-th graph input, one
// 64-bit draw z per element. float32: (z >> 40) * 2^-23 - 1, float64: (z >> 11) * 2^-52 - 1
// (both uniform in [-1, 1), exact); integers: (z >> 32) % 10, so in [0, 10); bools
// alternate false, true (no draws).
const MASK64 = (1n << 64n) - 1n;
const SEED = 0x6b696c6e62656e63n;

function splitmix64(k) {
  let state = (SEED + BigInt(k)) & MASK64;
  return () => {
    state = (state + 0x9e3779b97f4a7c15n) & MASK64;
    let z = state;
    z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK64;
    z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK64;
    return z ^ (z >> 31n);
  };
}

const INT_TYPES = {
  int64: BigInt64Array,
  uint64: BigUint64Array,
  int32: Int32Array,
  uint32: Uint32Array,
  int16: Int16Array,
  uint16: Uint16Array,
  int8: Int8Array,
  uint8: Uint8Array,
};

function generated(type, dims, k, name) {
  const n = dims.reduce((p, d) => p * d, 1);
  const next = splitmix64(k);
  let data;
  if (type === 'float32' || type === 'float64') {
    const f32 = type === 'float32';
    data = f32 ? new Float32Array(n) : new Float64Array(n);
    for (let i = 0; i < n; i++) {
      const z = next();
      data[i] = f32 ? Number(z >> 40n) * 2 ** -23 - 1 : Number(z >> 11n) * 2 ** -52 - 1;
    }
  } else if (type === 'bool') {
    data = new Uint8Array(n);
    for (let i = 0; i < n; i++) data[i] = i & 1;
  } else if (INT_TYPES[type]) {
    const C = INT_TYPES[type];
    const big = C === BigInt64Array || C === BigUint64Array;
    data = new C(n);
    for (let i = 0; i < n; i++) {
      const x = (next() >> 32n) % 10n;
      data[i] = big ? x : Number(x);
    }
  } else {
    throw new Error(`cannot generate ${type} input '${name}'; pass --input`);
  }
  return data;
}

// The shape to generate: --shape's (rank and fixed dims checked against the declaration)
// or the declared one, which must then be fully fixed, as in `kiln bench`.
function genShape(name, declared, text) {
  const decl = (declared || []).map((d) => (typeof d === 'number' && d >= 0 ? d : String(d || '?')));
  const declText = `[${decl.join(',')}]`;
  if (text !== undefined) {
    const dims = parseDims(name, text);
    if (declared && declared.length > 0 && dims.length !== decl.length) {
      throw new Error(`--shape ${name}: gives ${dims.length} dims; input '${name}' is ${declText} (rank ${decl.length})`);
    }
    decl.forEach((d, i) => {
      if (typeof d === 'number' && dims[i] !== d) {
        throw new Error(`--shape ${name}: dim ${i} is ${dims[i]}; input '${name}' is ${declText} (dim ${i} is ${d})`);
      }
    });
    return dims;
  }
  if (!declared) throw new Error(`input '${name}' has no declared shape; pass --shape ${name}=D0xD1x...`);
  const fixed = decl.map((d) => (typeof d === 'number' ? String(d) : 'N'));
  decl.forEach((d, i) => {
    if (typeof d !== 'number') {
      throw new Error(`input '${name}' dim ${i} is symbolic or unknown ('${d}'); pass --shape ${name}=${fixed.join('x')}`);
    }
  });
  return decl;
}

function typeText(type, dims) {
  return `${type}[${dims.join(',')}]`;
}

// Builds the feeds for a session: inputs from --input files, the others generated with the
// shape from --shape or the declared shape (which must then have no symbolic dims).
// Returns [{ name, type, dims, data, tensor, generated }] in graph input order.
function makeInputs(ort, session, fileItems, shapeItems) {
  const files = namedItems('--input', fileItems);
  const shapes = namedItems('--shape', shapeItems);
  const names = session.inputNames;
  for (const n of [...files.keys(), ...shapes.keys()]) {
    if (!names.includes(n)) {
      throw new Error(`the model has no input named '${n}'; its inputs are ${names.map((s) => `'${s}'`).join(', ')}`);
    }
  }
  const meta = session.inputMetadata || [];
  return names.map((name, k) => {
    const m = meta.find((v) => v.name === name) || {};
    let type;
    let dims;
    let data;
    const file = files.get(name);
    if (file !== undefined) {
      ({ type, dims, data } = readNpy(file));
      if (shapes.has(name)) throw new UsageError(`input '${name}' has both --input and --shape`);
    } else {
      if (m.isTensor === false) throw new Error(`cannot generate non-tensor input '${name}'; pass --input`);
      type = m.type;
      dims = genShape(name, m.shape, shapes.get(name));
      data = generated(type, dims, k, name);
    }
    const tensor = new ort.Tensor(type, data, dims);
    return { name, type, dims, data, tensor, generated: file === undefined };
  });
}

function feedsOf(inputs) {
  const feeds = {};
  for (const i of inputs) feeds[i.name] = i.tensor;
  return feeds;
}

// Runs main(argv) and maps errors to one line on stderr and an exit status (2 for usage).
function runMain(prog, usage, main) {
  main(process.argv.slice(2)).then(
    (rc) => process.exit(rc || 0),
    (e) => {
      const msg = e && e.message ? e.message.split('\n')[0] : String(e);
      process.stderr.write(`${prog}: ${msg}\n`);
      if (e instanceof UsageError) process.stderr.write(usage);
      process.exit(e instanceof UsageError ? 2 : 1);
    },
  );
}

module.exports = {
  UsageError,
  loadOrt,
  parseArgs,
  sessionOptions,
  makeInputs,
  feedsOf,
  typeText,
  runMain,
};
