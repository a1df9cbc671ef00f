"""kiln: an ONNX inference engine, with onnxruntime's Python API.

``import kiln as onnxruntime`` runs scripts written for onnxruntime's InferenceSession::

    import numpy as np
    import kiln

    sess = kiln.InferenceSession("demo/digits_cnn.onnx")
    name = sess.get_inputs()[0].name
    logits, label = sess.run(None, {name: np.load("demo/test_images.npy")})

kiln's own additions: :func:`build` (engine files, loaded by InferenceSession in
milliseconds), :func:`optimize`, :func:`convert`, :func:`benchmark`, :func:`cpu_isa`.
See docs/python.md for what differs from onnxruntime.
"""

import enum
import os
import statistics
import time
import warnings

import numpy as np

from . import _kiln
from ._kiln import (  # noqa: F401  (re-exported)
    EngineError,
    EPFail,
    Fail,
    InvalidArgument,
    InvalidGraph,
    InvalidProtobuf,
    KilnError,
    ModelLoaded,
    NoModel,
    NoSuchFile,
    NotImplemented,
    RuntimeException,
)

__version__ = _kiln.version()

__all__ = [
    "InferenceSession", "SessionOptions", "RunOptions", "GraphOptimizationLevel", "ExecutionMode",
    "ExecutionOrder", "NodeArg", "ModelMetadata", "IOBinding", "OrtValue", "get_available_providers",
    "get_all_providers", "get_device", "get_version_string", "set_default_logger_severity", "build",
    "optimize", "convert", "benchmark", "cpu_isa", "KilnError", "InvalidArgument", "NoSuchFile", "Fail",
    "InvalidGraph", "NotImplemented", "RuntimeException", "EPFail", "InvalidProtobuf", "NoModel",
    "ModelLoaded", "EngineError", "__version__",
]

_CPU = "CPUExecutionProvider"


def get_available_providers():
    """The execution providers kiln offers: ``["CPUExecutionProvider"]``."""
    return [_CPU]


def get_all_providers():
    """The same as :func:`get_available_providers` (kiln has no others)."""
    return [_CPU]


def get_device():
    """``"CPU"``."""
    return "CPU"


def get_version_string():
    """kiln's version, as ``kiln.__version__``."""
    return __version__


def cpu_isa():
    """The instruction set kiln's CPU kernels run with: "avx512", "avx2" or "portable"."""
    return _kiln.cpu_isa()


_default_log_level = 2


def set_default_logger_severity(level):
    """Sets the default log_severity_level of new sessions (0 verbose .. 4 fatal)."""
    global _default_log_level
    _default_log_level = int(level)


class GraphOptimizationLevel(enum.IntEnum):
    """onnxruntime's optimization levels, and the kiln levels they run."""

    ORT_DISABLE_ALL = 0  # kiln: none (the model as given)
    ORT_ENABLE_BASIC = 1  # kiln: basic (folding, dead code, CSE, no-op removal)
    ORT_ENABLE_EXTENDED = 2  # kiln: extended (+ fusions)
    ORT_ENABLE_ALL = 99  # kiln: layout (+ layout choices for the engine)


_KILN_LEVEL = {0: 0, 1: 1, 2: 2, 99: 3}
_LEVEL_NAMES = {"none": 0, "basic": 1, "extended": 2, "layout": 3}


class ExecutionMode(enum.IntEnum):
    """Accepted for compatibility; kiln runs the nodes of a graph in order."""

    ORT_SEQUENTIAL = 0
    ORT_PARALLEL = 1


class ExecutionOrder(enum.IntEnum):
    """Accepted for compatibility; kiln runs the nodes of a graph in order."""

    DEFAULT = 0
    PRIORITY_BASED = 1
    MEMORY_EFFICIENT = 2


# Session config entries kiln understands (add_session_config_entry). Other keys are kept,
# ignored, and reported once with a warning when a session uses them.
_KILN_CONFIG = {
    "kiln.max_tensor_bytes": "the largest tensor a kernel may allocate (0: no limit)",
    "kiln.max_memory_bytes": "the planned arena of a run's intermediates (0: no limit)",
    "kiln.max_depth": "how deep subgraphs may nest (0: 64)",
    "kiln.memory_limit": "fail building when a profile's planned intermediates need more bytes",
    "kiln.tune": "1: time kernel variants on the model's shapes and keep the fastest",
}


class SessionOptions:
    """onnxruntime's SessionOptions: the settings kiln applies, and those it accepts and ignores.

    Applied: intra_op_num_threads (threads per run, 0 = one per CPU),
    graph_optimization_level, enable_profiling / profile_file_prefix,
    optimized_model_filepath (".onnx": the optimized model; ".kiln": an engine file),
    log_severity_level (0 verbose build log, 1-2 fallback nodes only, 3-4 silent) and the
    "kiln.*" session config entries. Accepted and ignored: inter_op_num_threads,
    execution_mode, execution_order, enable_cpu_mem_arena, enable_mem_pattern,
    enable_mem_reuse, use_deterministic_compute, log_verbosity_level, logid.
    """

    def __init__(self):
        self.intra_op_num_threads = 0
        self.inter_op_num_threads = 0
        self.graph_optimization_level = GraphOptimizationLevel.ORT_ENABLE_ALL
        self.execution_mode = ExecutionMode.ORT_SEQUENTIAL
        self.execution_order = ExecutionOrder.DEFAULT
        self.enable_profiling = False
        self.profile_file_prefix = "kiln_profile"
        self.optimized_model_filepath = ""
        self.log_severity_level = _default_log_level
        self.log_verbosity_level = 0
        self.logid = ""
        self.enable_cpu_mem_arena = True
        self.enable_mem_pattern = True
        self.enable_mem_reuse = True
        self.use_deterministic_compute = False
        self._config = {}
        self._plugins = []

    def add_session_config_entry(self, key, value):
        """Sets a config entry. kiln's own keys ("kiln.max_tensor_bytes",
        "kiln.max_memory_bytes", "kiln.max_depth", "kiln.memory_limit", "kiln.tune") take an
        integer; an unknown "kiln." key raises InvalidArgument; onnxruntime's keys are kept
        but ignored (a warning when a session is created with them)."""
        key, value = str(key), str(value)
        if key.startswith("kiln."):
            if key not in _KILN_CONFIG:
                raise InvalidArgument(
                    f"session config entry '{key}' is not one kiln knows "
                    f"({', '.join(sorted(_KILN_CONFIG))})")
            try:
                if int(value) < 0:
                    raise ValueError
            except ValueError:
                raise InvalidArgument(f"session config entry '{key}': '{value}' is not an integer >= 0") from None
        self._config[key] = value

    def get_session_config_entry(self, key):
        """The value set for key; raises InvalidArgument when none is."""
        try:
            return self._config[key]
        except KeyError:
            raise InvalidArgument(f"session config entry '{key}' is not set") from None

    def register_custom_ops_library(self, path):
        """Loads a kiln plugin (custom operators, docs/plugins.md) for the whole process."""
        _kiln.load_plugin(path)
        self._plugins.append(path)

    def add_free_dimension_override_by_name(self, name, value):
        """Not supported by kiln: fix input shapes with kiln.build(shapes=...) instead."""
        raise NotImplemented(
            "add_free_dimension_override_by_name: kiln binds symbolic dims at run time; "
            "use kiln.build(model, path, shapes=...) to fix them")

    def _session_kwargs(self):
        cfg = self._config
        ignored = [k for k in cfg if not k.startswith("kiln.")]
        if ignored:
            warnings.warn(f"kiln ignores session config entries {ignored}", RuntimeWarning, stacklevel=3)
        level = int(self.graph_optimization_level)
        if level not in _KILN_LEVEL:
            raise InvalidArgument(f"graph_optimization_level {level} is not one of GraphOptimizationLevel")
        sev = int(self.log_severity_level)
        return dict(
            threads=int(self.intra_op_num_threads),
            level=_KILN_LEVEL[level],
            profile=bool(self.enable_profiling),
            optimized_path=self.optimized_model_filepath or None,
            max_tensor_bytes=int(cfg.get("kiln.max_tensor_bytes", 0)),
            max_memory_bytes=int(cfg.get("kiln.max_memory_bytes", 0)),
            max_depth=int(cfg.get("kiln.max_depth", 0)),
            memory_limit=int(cfg.get("kiln.memory_limit", 0)),
            tune=bool(int(cfg.get("kiln.tune", 0))),
            verbose=1 if sev <= 0 else 0 if sev <= 2 else -1,
        )


class RunOptions:
    """onnxruntime's RunOptions: ``terminate`` cancels runs (from any thread), ``timeout``
    (kiln's addition, seconds, 0 = none) stops a run that takes longer. Both stop at the next
    node boundary and raise kiln.Fail. log_severity_level, log_verbosity_level,
    run_tag and only_execute_path_to_fetches are accepted and ignored."""

    def __init__(self):
        self._ro = _kiln.RunOptions()
        self.log_severity_level = 2
        self.log_verbosity_level = 0
        self.run_tag = ""
        self.only_execute_path_to_fetches = False
        self._config = {}

    @property
    def terminate(self):
        return self._ro.terminate

    @terminate.setter
    def terminate(self, value):
        self._ro.terminate = bool(value)

    @property
    def timeout(self):
        return self._ro.timeout

    @timeout.setter
    def timeout(self, seconds):
        self._ro.timeout = float(seconds)

    def add_run_config_entry(self, key, value):
        """Kept and ignored (kiln has no run config entries)."""
        self._config[str(key)] = str(value)

    def get_run_config_entry(self, key):
        return self._config[key]


class NodeArg:
    """A graph input or output: ``name``, ``type`` ("tensor(float)", "seq(tensor(int64))")
    and ``shape`` (ints, symbolic dims as their names, None for unknown dims; [] for a
    sequence or an undeclared shape, as onnxruntime)."""

    __slots__ = ("name", "type", "shape")

    def __init__(self, name, type, shape):
        self.name, self.type, self.shape = name, type, shape

    def __repr__(self):
        return f"NodeArg(name={self.name!r}, type={self.type!r}, shape={self.shape!r})"


class ModelMetadata:
    """The model's metadata: producer_name, graph_name, domain, description, version,
    custom_metadata_map (and graph_description, "" in kiln)."""

    def __init__(self, d):
        self.producer_name = d["producer_name"]
        self.producer_version = d["producer_version"]
        self.graph_name = d["graph_name"]
        self.domain = d["domain"]
        self.description = d["description"]
        self.graph_description = ""
        self.version = d["version"]
        self.custom_metadata_map = d["custom_metadata_map"]

    def __repr__(self):
        return (f"ModelMetadata(producer_name={self.producer_name!r}, graph_name={self.graph_name!r}, "
                f"domain={self.domain!r}, version={self.version})")


_ONNX_ELEMENT = {
    np.dtype(np.float32): "float", np.dtype(np.float64): "double", np.dtype(np.float16): "float16",
    np.dtype(np.int8): "int8", np.dtype(np.int16): "int16", np.dtype(np.int32): "int32",
    np.dtype(np.int64): "int64", np.dtype(np.uint8): "uint8", np.dtype(np.uint16): "uint16",
    np.dtype(np.uint32): "uint32", np.dtype(np.uint64): "uint64", np.dtype(np.bool_): "bool",
    np.dtype(np.complex64): "complex64", np.dtype(np.complex128): "complex128",
}


def _type_of(value):
    if isinstance(value, list):
        return "seq(" + (_type_of(value[0]) if value else "tensor(float)") + ")"
    a = np.asarray(value)
    if a.dtype.kind in "OUS":
        return "tensor(string)"
    return f"tensor({_ONNX_ELEMENT.get(a.dtype, str(a.dtype))})"


class OrtValue:
    """A small OrtValue: a CPU value holding a NumPy array (or a list, for a sequence)."""

    def __init__(self, value):
        self._value = value

    @staticmethod
    def ortvalue_from_numpy(array, device_type="cpu", device_id=0):
        """Wraps array (no copy). Only device_type "cpu" exists."""
        _check_cpu(device_type)
        return OrtValue(np.asarray(array) if not isinstance(array, list) else array)

    @staticmethod
    def ortvalue_from_shape_and_type(shape, element_type, device_type="cpu", device_id=0):
        """A new zero-filled array of that shape and NumPy element type."""
        _check_cpu(device_type)
        return OrtValue(np.zeros(shape, dtype=element_type))

    def numpy(self):
        return self._value

    def shape(self):
        return list(np.shape(self._value)) if not isinstance(self._value, list) else []

    def data_type(self):
        return _type_of(self._value)

    def element_type(self):
        return self._value.dtype.type

    def device_name(self):
        return "cpu"

    def is_tensor(self):
        return isinstance(self._value, np.ndarray)

    def is_tensor_sequence(self):
        return isinstance(self._value, list)

    def has_value(self):
        return self._value is not None

    def data_ptr(self):
        return self._value.ctypes.data

    def update_inplace(self, array):
        """Copies array into this value's array (same shape and element type)."""
        np.copyto(self._value, array, casting="no")

    def __repr__(self):
        return f"OrtValue({self.data_type()}, shape={self.shape()})"


def _check_cpu(device_type):
    if str(device_type).lower() != "cpu":
        raise InvalidArgument(f"device '{device_type}': kiln's Python module runs on the CPU only")


def _array_at(ptr, element_type, shape):
    """A NumPy array viewing memory at address ptr (caller-owned)."""
    import ctypes

    dtype = np.dtype(element_type)
    n = int(np.prod(shape, dtype=np.int64)) if len(shape) else 1
    if n == 0:
        return np.zeros(shape, dtype=dtype)
    buf = (ctypes.c_char * (n * dtype.itemsize)).from_address(int(ptr))
    return np.frombuffer(buf, dtype=dtype).reshape(shape)


class IOBinding:
    """onnxruntime's IOBinding on the CPU. Inputs are bound arrays (read in place); an output
    bound to a buffer receives the run's result by a copy after the run (its shape and
    element type must match); an output bound without one is kiln's array."""

    def __init__(self, session):
        self._sess = session
        self._inputs = {}
        self._outputs = []  # (name, array or None)
        self._values = None

    def bind_cpu_input(self, name, arr_on_cpu):
        self._inputs[name] = arr_on_cpu

    def bind_input(self, name, device_type, device_id, element_type, shape, buffer_ptr):
        _check_cpu(device_type)
        self._inputs[name] = _array_at(buffer_ptr, element_type, tuple(shape))

    def bind_ortvalue_input(self, name, ortvalue):
        self._inputs[name] = ortvalue.numpy()

    def bind_output(self, name, device_type="cpu", device_id=0, element_type=None, shape=None, buffer_ptr=None):
        _check_cpu(device_type)
        buf = None
        if buffer_ptr is not None:
            if element_type is None or shape is None:
                raise InvalidArgument(f"bind_output '{name}': a buffer_ptr needs element_type and shape")
            buf = _array_at(buffer_ptr, element_type, tuple(shape))
        self._bind_out(name, buf)

    def bind_ortvalue_output(self, name, ortvalue):
        self._bind_out(name, ortvalue.numpy())

    def _bind_out(self, name, buf):
        if buf is not None and not buf.flags.writeable:
            raise InvalidArgument(f"bind_output '{name}': the buffer is read-only")
        self._outputs = [(n, b) for n, b in self._outputs if n != name] + [(name, buf)]

    def clear_binding_inputs(self):
        self._inputs = {}

    def clear_binding_outputs(self):
        self._outputs = []

    def synchronize_inputs(self):
        pass

    def synchronize_outputs(self):
        pass

    def get_outputs(self):
        """The last run's outputs as OrtValues."""
        return [OrtValue(v) for v in self._values_or_fail()]

    def copy_outputs_to_cpu(self):
        """The last run's outputs as NumPy arrays (lists for sequences)."""
        return list(self._values_or_fail())

    def _values_or_fail(self):
        if self._values is None:
            raise Fail("IOBinding: no run_with_iobinding has run yet")
        return self._values

    def _run(self, ro):
        names = [n for n, _ in self._outputs] or None
        values = self._sess._sess.run(names, self._inputs, ro)
        if names is None:
            self._values = values
            return
        for i, (name, buf) in enumerate(self._outputs):
            if buf is None:
                continue
            v = values[i]
            if not isinstance(v, np.ndarray) or v.shape != buf.shape or v.dtype != buf.dtype:
                raise InvalidArgument(
                    f"output '{name}': the run produced {_type_of(v)} {list(np.shape(v))}; "
                    f"the bound buffer is {_type_of(buf)} {list(buf.shape)}")
            np.copyto(buf, v)
            values[i] = buf
        self._values = values


class InferenceSession:
    """onnxruntime's InferenceSession, run by kiln.

    path_or_bytes: an ONNX model file (str or os.PathLike), its bytes, or a kiln engine file
    (kiln.build; recognized by its magic, whatever its name). providers: only
    "CPUExecutionProvider" exists; others are warned about and ignored.
    """

    def __init__(self, path_or_bytes, sess_options=None, providers=None, provider_options=None, **kwargs):
        if providers:
            names = [p[0] if isinstance(p, (tuple, list)) else p for p in providers]
            others = [p for p in names if p != _CPU]
            if others:
                warnings.warn(f"kiln has only {_CPU}; ignoring {others}", RuntimeWarning, stacklevel=2)
        self._options = sess_options if sess_options is not None else SessionOptions()
        kw = self._options._session_kwargs()
        self._model_path = None if isinstance(path_or_bytes, (bytes, bytearray, memoryview)) else os.fspath(path_or_bytes)
        self._sess = _kiln.Session(path_or_bytes, **kw)
        self._inputs = [NodeArg(*a) for a in self._sess.inputs()]
        self._outputs = [NodeArg(*a) for a in self._sess.outputs()]
        self._profile_start = time.time_ns()

    # --- onnxruntime's methods -------------------------------------------------------------

    def run(self, output_names, input_feed, run_options=None):
        """Runs the model. output_names: the outputs wanted, in order (None: all). input_feed:
        {input name: NumPy array (a list of arrays for a sequence input)}. Returns a list of
        arrays (lists for sequences, None for an empty optional)."""
        return self._sess.run(output_names, input_feed, None if run_options is None else run_options._ro)

    def run_with_ort_values(self, output_names, input_dict_ort_values, run_options=None):
        """run() taking and returning OrtValues."""
        feed = {k: v.numpy() for k, v in input_dict_ort_values.items()}
        return [OrtValue(v) for v in self.run(output_names, feed, run_options)]

    def run_with_iobinding(self, iobinding, run_options=None):
        iobinding._run(None if run_options is None else run_options._ro)

    def io_binding(self):
        return IOBinding(self)

    def get_inputs(self):
        return list(self._inputs)

    def get_outputs(self):
        return list(self._outputs)

    def get_overridable_initializers(self):
        """Always []: kiln treats initializers as constants (they are not graph inputs)."""
        return []

    def get_modelmeta(self):
        return ModelMetadata(self._sess.meta())

    def get_providers(self):
        return [_CPU]

    def get_provider_options(self):
        return {_CPU: {}}

    def set_providers(self, providers=None, provider_options=None):
        if providers and any((p[0] if isinstance(p, (tuple, list)) else p) != _CPU for p in providers):
            warnings.warn(f"kiln has only {_CPU}", RuntimeWarning, stacklevel=2)

    def get_session_options(self):
        return self._options

    def disable_fallback(self):
        pass

    def enable_fallback(self):
        pass

    def get_profiling_start_time_ns(self):
        return self._profile_start

    def end_profiling(self):
        """Writes the profile of the runs so far (a Chrome trace, for chrome://tracing or
        Perfetto) to '<profile_file_prefix>_<date>.json' and returns its path; "" when the
        session was created without enable_profiling. The profile starts afresh."""
        if not self._sess.profiling:
            return ""
        path = f"{self._options.profile_file_prefix}_{time.strftime('%Y-%m-%d_%H-%M-%S')}_{time.time_ns() % 10**9}.json"
        self._sess.write_trace(path)
        return path

    # --- kiln's additions ------------------------------------------------------------------

    def profile(self):
        """kiln: per-node timings of a profiling session (name, op_type, kernel, shapes,
        total_ms, calls, depth)."""
        return self._sess.profile()

    def save_engine(self, path):
        """kiln: writes the session's engine (optimized, kernels chosen) as an engine file."""
        self._sess.save_engine(path)

    @property
    def threads(self):
        """kiln: the threads a run uses, the calling one included."""
        return self._sess.threads


def _model_arg(model):
    return model if isinstance(model, (bytes, bytearray, memoryview)) else os.fspath(model)


_PRECISIONS = {"fp32": 1, "fp16": 2, "bf16": 4, "int8": 8}


def build(model, path, shapes=None, profiles=None, precision="fp32", threads=0, level="extended",
          memory_limit=0, tune=False, verbose=False):
    """Builds a kiln engine file from an ONNX model (a path or bytes), as `kiln build`.

    shapes: {input: dims} fixing inputs to one shape first. profiles: {input: (min, opt,
    max)} for one profile named "default", or {profile: {input: (min, opt, max)}}; runs are
    bounded by the first profile admitting their shapes. precision: "fp32" (or a list of
    precisions, which must include "fp32" today). threads: per run (0: one per CPU).
    level: "none", "basic", "extended" or "layout". InferenceSession(path) loads the result.
    """
    shape_list = [(str(k), [int(d) for d in v]) for k, v in (shapes or {}).items()]
    prof_list = []
    if profiles:
        nested = any(isinstance(v, dict) for v in profiles.values())
        for prof, inputs in (profiles.items() if nested else [("default", profiles)]):
            for name, bounds in inputs.items():
                lo, opt, hi = bounds if len(bounds) == 3 else (bounds[0], bounds[1], bounds[1])
                prof_list.append((str(prof), str(name), list(lo), list(opt), list(hi)))
    precs = [precision] if isinstance(precision, str) else list(precision)
    mask = 0
    for p in precs:
        if p not in _PRECISIONS:
            raise InvalidArgument(f"build: precision '{p}'; expected one of {sorted(_PRECISIONS)}")
        mask |= _PRECISIONS[p]
    lv = _LEVEL_NAMES.get(level, level) if isinstance(level, str) else int(level)
    if lv not in (0, 1, 2, 3):
        raise InvalidArgument(f"build: level {level!r}; expected none, basic, extended or layout")
    _kiln.build(_model_arg(model), os.fspath(path), shapes=shape_list, profiles=prof_list, precisions=mask,
                threads=int(threads), level=lv, memory_limit=int(memory_limit), tune=bool(tune),
                verbose=1 if verbose else 0)
    return os.fspath(path)


def optimize(model, out_path=None, level="extended", keep_fused=True, passes=None, report=False):
    """Optimizes an ONNX model (a path or bytes), as `kiln optimize`, and writes it to
    out_path (or returns its bytes when out_path is None). level: "basic", "extended" or
    "layout" (or 1..3). keep_fused=False keeps to standard ONNX ops. passes: a
    comma-separated list of pass names instead of the level's. report=True also returns the
    optimizer's report lines: (result, lines)."""
    lv = _LEVEL_NAMES.get(level, level) if isinstance(level, str) else int(level)
    if lv not in (0, 1, 2, 3):
        raise InvalidArgument(f"optimize: level {level!r}; expected none, basic, extended or layout")
    return _kiln.optimize(_model_arg(model), None if out_path is None else os.fspath(out_path), lv,
                          bool(keep_fused), passes, 0, bool(report))


def convert(model, out_path=None, opset=None):
    """Converts an ONNX model's default-domain opset, as `kiln convert`, writing out_path (or
    returning the bytes when out_path is None)."""
    if opset is None:
        raise InvalidArgument("convert: opset is required")
    return _kiln.convert(_model_arg(model), None if out_path is None else os.fspath(out_path), int(opset))


def benchmark(session, feed, runs=100, warmup=10, python=True):
    """Times session on feed: `runs` timed runs after `warmup`. Returns a dict of
    milliseconds: median_ms, mean_ms, min_ms, max_ms, p90_ms (kiln's C loop over
    kiln_session_run, inputs converted once, the GIL released) and, with python=True,
    python_median_ms (session.run called from Python, outputs converted) and
    python_overhead_us (their medians' difference)."""
    if runs < 1:
        raise InvalidArgument("benchmark: runs must be >= 1")
    sess = session._sess if isinstance(session, InferenceSession) else session
    ms = sorted(sess.bench(feed, int(runs), int(warmup)))
    res = {
        "runs": len(ms),
        "median_ms": statistics.median(ms),
        "mean_ms": statistics.fmean(ms),
        "min_ms": ms[0],
        "max_ms": ms[-1],
        "p90_ms": float(np.percentile(ms, 90)),
        "threads": sess.threads,
    }
    if python:
        for _ in range(int(warmup)):
            sess.run(None, feed)
        py = []
        for _ in range(int(runs)):
            t0 = time.perf_counter()
            sess.run(None, feed)
            py.append((time.perf_counter() - t0) * 1e3)
        res["python_median_ms"] = statistics.median(py)
        res["python_overhead_us"] = (res["python_median_ms"] - res["median_ms"]) * 1e3
    return res

