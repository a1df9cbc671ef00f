"""python3 -m kiln MODEL [options]: runs a model once, as `kiln run` does (docs/cli.md).

  --input NAME=FILE   bind input NAME to FILE (.npy, or an ONNX TensorProto/SequenceProto); repeatable
  --input-dir DIR     bind DIR/input_0.pb, DIR/input_1.pb, ... to the inputs in order
                      (--input wins for an input given both ways)
  --output-dir DIR    write output_0.pb, output_1.pb, ... (or .npy) instead of printing
  --format pb|npy     the file format for --output-dir (default pb)
  --threads N         threads per run, 0 (default) = one per CPU
  --print-all         print every element instead of a summary
  --level L           none (default: the model as given), basic, extended or layout
  --timeout S         stop the run after S seconds

MODEL may be a kiln engine file. Exit status: 0 on success, 1 when kiln fails (the message
on stderr, prefixed "kiln: "), 2 for a usage error.
"""
import argparse
import os
import sys

import numpy as np

import kiln
from kiln import _kiln

_LEVELS = {"none": kiln.GraphOptimizationLevel.ORT_DISABLE_ALL,
           "basic": kiln.GraphOptimizationLevel.ORT_ENABLE_BASIC,
           "extended": kiln.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
           "layout": kiln.GraphOptimizationLevel.ORT_ENABLE_ALL}
SHORT_LIMIT = 20  # as kiln run: tensors up to this many elements are printed in full
HEAD_COUNT = 8


def _parser():
    p = argparse.ArgumentParser(prog="python3 -m kiln", description="Run an ONNX model once, as `kiln run`.")
    p.add_argument("model")
    p.add_argument("--input", action="append", default=[], metavar="NAME=FILE")
    p.add_argument("--input-dir")
    p.add_argument("--output-dir")
    p.add_argument("--format", choices=("pb", "npy"), default="pb")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--print-all", action="store_true")
    p.add_argument("--level", choices=sorted(_LEVELS), default="none")
    p.add_argument("--timeout", type=float, default=0)
    return p


def _type_name(a):
    return "string" if a.dtype.kind in "OUS" else str(a.dtype)


def _fmt(x):
    if isinstance(x, (bool, np.bool_)):
        return "true" if x else "false"
    if isinstance(x, (float, np.floating)):
        return f"{float(x):.6g}"
    if isinstance(x, (complex, np.complexfloating)):
        return f"{x.real:.6g}{x.imag:+.6g}i"
    if isinstance(x, bytes):
        x = x.decode("utf-8", "replace")
    return str(x)


def _print_value(v, indent, print_all, depth=0):
    if v is None:
        print("optional: none")
        return
    if isinstance(v, list):
        elem = _type_name(v[0]) if v else "undefined"
        print(f"seq({elem}) of {len(v)} item{'' if len(v) == 1 else 's'}")
        for i, item in enumerate(v[:None if depth < 8 else 0]):
            print(f"{indent}  [{i}] ", end="")
            _print_value(item, indent + "    ", print_all, depth + 1)
        return
    print(f"{_type_name(v)}[{','.join(str(d) for d in v.shape)}]")
    n = v.size
    if n == 0:
        print(f"{indent}  values: (empty)")
        return
    flat = v.ravel()
    shown = n if print_all or n <= SHORT_LIMIT else HEAD_COUNT
    tail = f" ... ({n} elements)" if shown < n else ""
    print(f"{indent}  values: " + " ".join(_fmt(x) for x in flat[:shown]) + tail)
    if shown == n or v.dtype.kind not in "fiu":
        return
    f = flat.astype(np.float64)
    nan = int(np.isnan(f).sum())
    if nan == n:
        print(f"{indent}  all NaN")
        return
    line = f"{indent}  min {np.nanmin(f):.6g}  max {np.nanmax(f):.6g}  mean {np.nanmean(f):.6g}"
    print(line + (f"  NaN {nan}" if nan else ""))


def _kind(node_arg):
    return 2 if node_arg.type.startswith("seq(") else 3 if node_arg.type.startswith("optional(") else 1


def main(argv=None):
    args = _parser().parse_args(argv)
    so = kiln.SessionOptions()
    so.intra_op_num_threads = args.threads
    so.graph_optimization_level = _LEVELS[args.level]
    try:
        sess = kiln.InferenceSession(args.model, so)
        inputs = sess.get_inputs()
        by_name = {i.name: i for i in inputs}
        files = {}
        if args.input_dir:
            for k, inp in enumerate(inputs):
                path = os.path.join(args.input_dir, f"input_{k}.pb")
                if os.path.exists(path):
                    files[inp.name] = path
            extra = os.path.join(args.input_dir, f"input_{len(inputs)}.pb")
            if os.path.exists(extra):
                raise kiln.InvalidArgument(f"{args.input_dir} holds {extra} but the model has {len(inputs)} inputs")
        for spec in args.input:
            name, eq, path = spec.partition("=")
            if not eq or not name or not path:
                _parser().error(f"--input takes NAME=FILE; got '{spec}'")
            if name not in by_name:
                raise kiln.InvalidArgument(f"--input {name}: the model has no input named '{name}' "
                                           f"(inputs: {', '.join(by_name)})")
            files[name] = path
        missing = [i.name for i in inputs if i.name not in files]
        if missing:
            raise kiln.InvalidArgument("no value for input " + ", ".join(f"'{m}'" for m in missing)
                                       + " (pass --input NAME=FILE or --input-dir DIR)")
        feed = {name: _kiln.read_value(path, _kind(by_name[name])) for name, path in files.items()}
        ro = kiln.RunOptions()
        if args.timeout:
            ro.timeout = args.timeout
        outs = sess.run(None, feed, ro)
        names = [o.name for o in sess.get_outputs()]
        if args.output_dir:
            os.makedirs(args.output_dir, exist_ok=True)
            for k, (name, v) in enumerate(zip(names, outs)):
                path = os.path.join(args.output_dir, f"output_{k}.{args.format}")
                if args.format == "npy":
                    if not isinstance(v, np.ndarray) or v.dtype == object:
                        raise kiln.InvalidArgument(f"output '{name}' is not a numeric tensor; write it with --format pb")
                    np.save(path, v, allow_pickle=False)
                else:
                    _kiln.write_pb(v, name, path, 2 if isinstance(v, list) else 1)
        else:
            for name, v in zip(names, outs):
                print(f"{name}: ", end="")
                _print_value(v, "", args.print_all)
    except kiln.KilnError as e:
        print(f"kiln: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
