#!/usr/bin/env node
// bench/ort_bench.js: time one model in ONNX Runtime (CPU), the way `kiln bench` times it
// in kiln, so the two can be compared side by side (bench/compare.sh, docs/benchmarks.md).
//
//   node bench/ort_bench.js MODEL [--input NAME=FILE.npy]... [--shape NAME=D0xD1...]...
//        [--threads N] [--warmup N] [--iterations N] [--min-time S] [--json] [--profile]
//
// The same semantics as `kiln bench` (tools/cli/cmd_bench.c, docs/cli.md). Inputs not
// given as files are generated as kiln generates them (bench/ort_common.js: deterministic;
// floats uniform in [-1, 1), integers in [0, 10), bools alternating) with the --shape
// given or the declared shape (a symbolic dim must be fixed with --shape). The session:
// intra-op threads = --threads (0, the default, = ORT's default: one per physical core),
// one inter-op thread, graph optimization level 'all', sequential execution.
// After --warmup untimed runs (default 3), runs are timed one by one (wall clock around
// each session.run, which includes the Node binding's per-call cost, about 0.02-0.04 ms):
// exactly --iterations of them, or without it until there are at least 10 and --min-time
// seconds (default 1) have passed. Median and p90 interpolate linearly between the sorted
// samples (as numpy.percentile does).
// --json prints one line ("threads" is the number asked for: 0 stays 0, as ORT does not
// report how many threads its default gives):
//   {"model":"...","threads":N,"warmup":N,"runs":N,
//    "latency_ms":{"min":x,"median":x,"p90":x,"mean":x,"max":x},"inputs":{"name":[dims...]},
//    "load_ms":x,"peak_rss_mb":x,"base_rss_mb":x}
// load_ms is InferenceSession.create (reading, optimizing, preparing the model); peak_rss_mb
// the process's peak resident memory at the end, base_rss_mb the peak before the session was
// created (Node and the ORT library: what the process costs before any model).
// --profile turns on ORT's own profiler (enableProfiling) for the timed runs and then prints
// its node times as `kiln bench --profile` prints kiln's: per node (sorted by cost, with the
// op type and the kernel's output shape where ORT records it) and per op type, summed over
// the timed runs; the profiler's JSON file is removed afterwards. With --profile the latency
// includes the profiler's own cost: use it to see where the time goes, not to compare speed.
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');

const c = require('./ort_common');

const USAGE =
  'usage: node bench/ort_bench.js MODEL [--input NAME=FILE.npy]... [--shape NAME=D0xD1...]...\n' +
  '       [--threads N] [--warmup N] [--iterations N] [--min-time S] [--json] [--profile]\n';

const DEFAULTS = { threads: 0, warmup: 3, iterations: 0, min_time: 1 };
const MIN_AUTO_RUNS = 10;
const MAX_AUTO_RUNS = 100000;

function percentile(sorted, q) {
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.min(lo + 1, sorted.length - 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

function round(x) {
  return Number(x.toPrecision(6));
}

async function main(argv) {
  const { positional, opts } = c.parseArgs(argv, {
    '--input': 'list',
    '--shape': 'list',
    '--threads': 'int',
    '--warmup': 'int',
    '--iterations': 'int',
    '--min-time': 'float',
    '--json': 'flag',
    '--profile': 'flag',
    '--help': 'flag',
  });
  if (opts.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (positional.length !== 1) throw new c.UsageError('expected one MODEL');
  const o = { ...DEFAULTS, ...opts };
  if (opts.iterations === 0) throw new c.UsageError('--iterations takes a number from 1 up; got 0');
  if (o.threads > 1024) throw new c.UsageError(`--threads takes a number from 0 to 1024; got ${o.threads}`);
  const model = positional[0];

  const ort = c.loadOrt();
  // The process's peak RSS before the session: Node and the ORT library themselves.
  const baseRssMb = process.resourceUsage().maxRSS / 1024;
  const tLoad = process.hrtime.bigint();
  const sopts = c.sessionOptions(o.threads);
  let profDir = null;
  if (o.profile) {
    profDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ort-profile-'));
    sopts.enableProfiling = true;
    sopts.profileFilePrefix = path.join(profDir, 'ort');
  }
  const session = await ort.InferenceSession.create(model, sopts);
  const loadMs = Number(process.hrtime.bigint() - tLoad) / 1e6;
  const inputs = c.makeInputs(ort, session, o.input, o.shape);
  const feeds = c.feedsOf(inputs);

  for (let i = 0; i < o.warmup; i++) await session.run(feeds);

  const times = [];
  const cap = o.iterations || MAX_AUTO_RUNS;
  const minNs = BigInt(Math.round(o.min_time * 1e9));
  const start = process.hrtime.bigint();
  const cpuStart = process.cpuUsage();
  while (times.length < cap) {
    const t0 = process.hrtime.bigint();
    await session.run(feeds);
    const t1 = process.hrtime.bigint();
    times.push(Number(t1 - t0) / 1e6);
    if (!o.iterations && times.length >= MIN_AUTO_RUNS && t1 - start >= minNs) break;
  }
  const wall = Number(process.hrtime.bigint() - start) / 1e9;
  const cpu = process.cpuUsage(cpuStart); // microseconds, every thread of the process
  const cpuMs = (cpu.user + cpu.system) / 1e3 / times.length;
  const sorted = [...times].sort((a, b) => a - b);
  const min = sorted[0];
  const max = sorted[sorted.length - 1];
  const mean = times.reduce((a, b) => a + b, 0) / times.length;
  const lat = {
    min: round(min),
    median: round(percentile(sorted, 0.5)),
    p90: round(percentile(sorted, 0.9)),
    mean: round(Math.min(max, Math.max(min, mean))),
    max: round(max),
  };
  const shapes = {};
  for (const i of inputs) shapes[i.name] = i.dims;

  if (o.json) {
    process.stdout.write(
      JSON.stringify({
        model, threads: o.threads, warmup: o.warmup, runs: times.length, latency_ms: lat, inputs: shapes,
        cpu_ms: round(cpuMs), load_ms: round(loadMs), peak_rss_mb: round(process.resourceUsage().maxRSS / 1024),
        base_rss_mb: round(baseRssMb),
      }) + '\n',
    );
  } else {
    const ins = inputs.map((i) => `${i.name} ${c.typeText(i.type, i.dims)}${i.generated ? ' (generated)' : ''}`);
    process.stdout.write(
      `model:    ${model}\n` +
        `engine:   onnxruntime ${ort.version} (CPU), intra-op threads ${o.threads}${o.threads === 0 ? ' (ORT default)' : ''}\n` +
        `inputs:   ${ins.join(', ')}\n` +
        `runs:     ${times.length} timed after ${o.warmup} warm-up (${wall.toFixed(2)} s)\n` +
        `latency:  min ${lat.min} ms  median ${lat.median} ms  p90 ${lat.p90} ms  mean ${lat.mean} ms  max ${lat.max} ms\n`,
    );
  }
  if (profDir) {
    session.endProfiling();
    printProfile(profDir, o.warmup, times.length);
  }
  await session.release();
  return 0;
}

// Reads the one profile file in dir, keeps the node events of the timed runs (the events of
// the first `warmup` runs are dropped) and prints the table; removes the folder.
function printProfile(dir, warmup, runs) {
  const files = fs.readdirSync(dir).filter((f) => f.endsWith('.json'));
  if (files.length !== 1) throw new Error(`expected one ORT profile file in ${dir}; found ${files.length}`);
  const events = JSON.parse(fs.readFileSync(path.join(dir, files[0]), 'utf8'));
  fs.rmSync(dir, { recursive: true, force: true });
  const nodes = new Map();
  // Runs are delimited by 'model_run' Session events (each after its nodes): number the
  // node events by the index of the model_run that follows them.
  const runEnds = events.filter((e) => e.cat === 'Session' && e.name === 'model_run').map((e) => e.ts + e.dur);
  for (const e of events) {
    if (e.cat !== 'Node' || !e.name.endsWith('_kernel_time')) continue;
    const run = runEnds.findIndex((t) => e.ts <= t);
    if (run < warmup) continue;
    const name = e.name.slice(0, -'_kernel_time'.length);
    let n = nodes.get(name);
    if (!n) {
      n = { name, op: (e.args && e.args.op_name) || '?', us: 0, calls: 0, shape: '' };
      const out = e.args && e.args.output_type_shape;
      if (out && out.length) n.shape = JSON.stringify(Object.values(out[0])[0]);
      nodes.set(name, n);
    }
    n.us += e.dur;
    n.calls++;
  }
  const all = [...nodes.values()].sort((a, b) => b.us - a.us);
  const total = all.reduce((t, n) => t + n.us, 0);
  const pct = (us) => ((100 * us) / (total || 1)).toFixed(1).padStart(5) + '%';
  let out = `profile:    ${all.length} nodes, times summed over ${runs} timed runs (${(total / 1e3 / runs).toFixed(3)} ms per run in nodes)\n`;
  out += '    total ms  share   calls  op type         node  output shape\n';
  for (const n of all) {
    out += `${(n.us / 1e3).toFixed(3).padStart(12)} ${pct(n.us)} ${String(n.calls).padStart(7)}  ${n.op.padEnd(15)} ${n.name}  ${n.shape}\n`;
  }
  const ops = new Map();
  for (const n of all) {
    const t = ops.get(n.op) || { us: 0, nodes: 0 };
    t.us += n.us;
    t.nodes++;
    ops.set(n.op, t);
  }
  out += 'by op type:\n    total ms  share   nodes  op type\n';
  for (const [op, t] of [...ops.entries()].sort((a, b) => b[1].us - a[1].us)) {
    out += `${(t.us / 1e3).toFixed(3).padStart(12)} ${pct(t.us)} ${String(t.nodes).padStart(7)}  ${op}\n`;
  }
  process.stdout.write(out);
}

c.runMain('ort_bench', USAGE, main);
