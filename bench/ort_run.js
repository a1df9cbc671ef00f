#!/usr/bin/env node
// bench/ort_run.js: run one model in ONNX Runtime (CPU) and write its outputs as .npy, as
// a correctness reference for kiln (`kiln run --format npy --output-dir`, `kiln compare`).
//
//   node bench/ort_run.js MODEL [--input NAME=FILE.npy]... [--shape NAME=D0xD1...]...
//        --output-dir DIR [--save-inputs DIR] [--threads N]
//
// Writes DIR/output_K.npy for the K-th graph output (graph output order, as kiln does) and
// prints one line per output: `output K TYPE[DIMS] NAME`.
// Inputs not given as files are generated as bench/ort_bench.js generates them; with
// --save-inputs DIR every input is written as DIR/input_K.npy (graph input order) and a
// line `input NAME=DIR/input_K.npy` is printed for it first (for `kiln run --input`).
'use strict';

const fs = require('fs');
const path = require('path');
const c = require('./ort_common');
const { writeNpy } = require('./npy');

const USAGE =
  'usage: node bench/ort_run.js MODEL [--input NAME=FILE.npy]... [--shape NAME=D0xD1...]...\n' +
  '       --output-dir DIR [--save-inputs DIR] [--threads N]\n';

async function main(argv) {
  const { positional, opts } = c.parseArgs(argv, {
    '--input': 'list',
    '--shape': 'list',
    '--output-dir': 'string',
    '--save-inputs': 'string',
    '--threads': 'int',
    '--help': 'flag',
  });
  if (opts.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (positional.length !== 1) throw new c.UsageError('expected one MODEL');
  if (!opts.output_dir) throw new c.UsageError('--output-dir DIR is required');
  const model = positional[0];

  const ort = c.loadOrt();
  const session = await ort.InferenceSession.create(model, c.sessionOptions(opts.threads || 0));
  const inputs = c.makeInputs(ort, session, opts.input, opts.shape);
  const results = await session.run(c.feedsOf(inputs));

  if (opts.save_inputs) {
    fs.mkdirSync(opts.save_inputs, { recursive: true });
    inputs.forEach((i, k) => {
      const f = path.join(opts.save_inputs, `input_${k}.npy`);
      writeNpy(f, i.type, i.dims, i.data);
      process.stdout.write(`input ${i.name}=${f}\n`);
    });
  }
  fs.mkdirSync(opts.output_dir, { recursive: true });
  session.outputNames.forEach((name, k) => {
    const t = results[name];
    if (!t || t.type === undefined || t.dims === undefined) {
      throw new Error(`output '${name}' is not a tensor; only tensors can be written as .npy`);
    }
    writeNpy(path.join(opts.output_dir, `output_${k}.npy`), t.type, t.dims, t.data);
    process.stdout.write(`output ${k} ${c.typeText(t.type, t.dims)} ${name}\n`);
  });
  await session.release();
  return 0;
}

c.runMain('ort_run', USAGE, main);
