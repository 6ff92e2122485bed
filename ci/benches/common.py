"""What every benchmark shares: paths, timing and statistics, processes, the variants.

- paths: ROOT (the repository), FIXTURES, BENCH (ci/bench.py, which the benchmarks run again
  as a child for the parts that need another interpreter or a fresh process);
- statistics: `stats` (median and min of rounds; the median is `statistics.median`, the mean
  of the two middle values for an even count) and `interleaved` (rounds interleaved across
  candidates, so the load of a shared machine falls on all of them alike);
- processes: `igpt_bin` (builds igpt-onnx and finds it wherever cargo puts it, as ci/lib.sh
  does: CARGO_TARGET_DIR, a config's build.target-dir, or ./target), `run_timed` (wall time,
  peak RSS and CPU time of a child from wait4(2), no GNU time needed), `igpt_json` (runs
  igpt-onnx with `--json -` and reads its one JSON object);
- `variants`: the profile and precision flags of every export the binary can make, from the
  binary itself (`igpt-onnx support --format json`), so a precision is benchmarked the day
  the binary gains it;
- the single-thread read bandwidth numpy measures (the floor of a memory-bound decoder step);
- ONNX Runtime: the one session configuration every benchmark uses and the accuracy measures
  of next-token distributions (cosine, argmax agreement, KL);
- a safetensors reader (numpy only), text tables, JSON output, environment checks.

Only the standard library at import time: numpy and onnxruntime are imported where used, so
the torch interpreter (fixtures/.venv) can run the parts of ci/bench.py it is needed for.
"""

import json
import os
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "fixtures")
# The entry point, not this package: the torch interpreter and fresh processes run a
# subcommand of it.
BENCH = os.path.join(ROOT, "ci", "bench.py")
PROJECT_PY = os.path.join(ROOT, ".venv", "bin", "python")
TORCH_PY = os.path.join(ROOT, "fixtures", ".venv", "bin", "python")

# Where the human-readable output goes: stdout, or stderr when the JSON goes to stdout
# (`--json -`), as `igpt-onnx generate --json -` does.
OUT = sys.stdout


def say(*args):
    print(*args, file=OUT, flush=True)


class SetupError(Exception):
    """A missing tool or environment: ci/bench.py prints it on one line and exits 2."""


# --- statistics ---------------------------------------------------------------------------------


def stats(values):
    """{"median", "min", "max", "n"} of a list of numbers (NaN-free)."""
    if not values:
        return {"median": float("nan"), "min": float("nan"), "max": float("nan"), "n": 0}
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "n": len(values)}


def interleaved(candidates, rounds, on_round=None):
    """Runs `rounds` rounds; each round calls every candidate once, in order.

    candidates: {label: fn}; fn() returns the seconds it measured itself, or None to be timed
    here (wall time around the call). Returns {label: [seconds per round]}.
    on_round(round, label, seconds) is called after each call (progress lines)."""
    times = {k: [] for k in candidates}
    for r in range(rounds):
        for k, fn in candidates.items():
            t = time.perf_counter()
            got = fn()
            secs = time.perf_counter() - t if got is None else got
            times[k].append(secs)
            if on_round:
                on_round(r, k, secs)
    return times


def ratio(num, den):
    return num / den if den else float("nan")


# --- the machine --------------------------------------------------------------------------------


def read_bandwidth_gbs(mb=1024, runs=5):
    """Single-thread read bandwidth: numpy summing a 1 GiB float32 array (best of runs)."""
    import numpy as np

    a = np.ones(mb * (1 << 20) // 4, dtype=np.float32)
    best = 0.0
    for _ in range(runs):
        t = time.perf_counter()
        a.sum(dtype=np.float32)
        best = max(best, a.nbytes / (time.perf_counter() - t) / 1e9)
    return best


def machine():
    with open("/proc/loadavg") as f:
        load = [float(x) for x in f.read().split()[:3]]
    return {"cores": os.cpu_count(), "load_average": load}


def machine_line():
    m = machine()
    return f"machine: {m['cores']} cores, load average {' '.join(f'{x:.2f}' for x in m['load_average'])}"


# --- processes ----------------------------------------------------------------------------------


def need_tool(name):
    if shutil.which(name) is None:
        raise SetupError(f"{name} is not on PATH")


def target_dir():
    """cargo's target directory, as ci/lib.sh finds it (`cargo metadata`)."""
    need_tool("cargo")
    p = subprocess.run(["cargo", "metadata", "--format-version", "1", "--no-deps", "--offline"],
                       cwd=ROOT, capture_output=True, text=True)
    if p.returncode != 0:
        raise SetupError(f"cargo metadata failed: {p.stderr.strip().splitlines()[-1:]}")
    return json.loads(p.stdout)["target_directory"]


def cargo_out_dir(profile):
    return os.path.join(target_dir(), "debug" if profile == "dev" else profile)


def cargo_build(profile, *what):
    """`cargo build --quiet --profile PROFILE WHAT...`; output to stderr."""
    need_tool("cargo")
    cmd = ["cargo", "build", "--quiet", "--profile", profile, *what]
    if subprocess.run(cmd, cwd=ROOT, stdout=sys.stderr).returncode != 0:
        raise SetupError(f"{' '.join(cmd)} failed")


def igpt_bin(profile="dev", binary=None):
    """The igpt-onnx binary: `binary` as given, else built in `profile` (dev: the one the
    README commands build; every dependency is optimised there) and found via cargo."""
    if binary:
        if not os.access(binary, os.X_OK):
            raise SetupError(f"--bin {binary} is not an executable")
        return os.path.abspath(binary)
    say(f"== cargo build ({profile}: igpt-onnx)")
    cargo_build(profile, "--bin", "igpt-onnx")
    return os.path.join(cargo_out_dir(profile), "igpt-onnx")


def run(cmd, **kw):
    """Runs cmd; on failure raises with its output."""
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))}: exit {p.returncode}\n{p.stdout}{p.stderr}")
    return p


def igpt_json(binary, *args):
    """Runs `igpt-onnx ARGS --json -` and returns the JSON object it prints on stdout."""
    p = run([binary, *args, "--json", "-"])
    return json.loads(p.stdout)


def run_timed(cmd, log=None, ok=(0,)):
    """Runs cmd (output to `log` or discarded) and returns {"wall_s", "max_rss_kb", "user_s",
    "sys_s", "rc"}, from wait4(2): the child's peak RSS and CPU time, as GNU time's %M %U %S.
    Raises when the exit status is not in `ok`."""
    out = open(log, "w") if log else subprocess.DEVNULL
    try:
        t = time.perf_counter()
        p = subprocess.Popen([str(c) for c in cmd], stdout=out, stderr=subprocess.STDOUT)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t
        p.returncode = os.waitstatus_to_exitcode(status)
    finally:
        if log:
            out.close()
    if p.returncode not in ok:
        text = open(log).read() if log else ""
        raise RuntimeError(f"{' '.join(map(str, cmd))}: exit {p.returncode}\n{text}")
    return {"wall_s": wall, "max_rss_kb": ru.ru_maxrss, "user_s": ru.ru_utime,
            "sys_s": ru.ru_stime, "rc": p.returncode}


def random_checkpoint(binary, bench_dir, size, seed):
    """A random-weight checkpoint of a published size, cached in bench_dir and reused; a fresh
    one is flushed to disk (untimed) so the first export does not compete with its writeback
    (seen: medium 4.3 s vs 1.3 s, large 12.5 s vs 5 s without this)."""
    name = size if seed == 0 else f"{size}-seed{seed}"
    ckpt = os.path.join(bench_dir, name)
    if os.path.exists(os.path.join(ckpt, "model.safetensors")) and \
            os.path.exists(os.path.join(ckpt, "config.json")):
        return ckpt, None
    os.makedirs(bench_dir, exist_ok=True)
    tmp = ckpt + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    made = run_timed([binary, "random-checkpoint", "--variant", size, "--seed", seed, "--out", tmp])
    shutil.rmtree(ckpt, ignore_errors=True)
    os.rename(tmp, ckpt)
    fd = os.open(os.path.join(ckpt, "model.safetensors"), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return ckpt, made


# --- variants -----------------------------------------------------------------------------------

# Help text cannot list the binary's labels: --help has to work before a binary is built.
VARIANTS_HELP = "PROFILE (float32) or 'PROFILE VALUE', e.g. 'ort int8', as `igpt-onnx support` lists them"


# The calibration set of the precisions that need one (static int8) where a benchmark names
# none: the trained case's inputs, valid token ids for any model of vocabulary 513 and at least
# 32 positions (every published size, the trained model, a random checkpoint).
CALIBRATION = os.path.join(FIXTURES, "trained", "digits", "inputs.safetensors")


def variants(binary, calibration=CALIBRATION):
    """{label: export flags} of every precision in every profile it fits, as the binary lists
    them (`igpt-onnx support --format json`) and in its order (precisions, then each one's
    profiles), so tables keep the binary's table order, float32 first. Label PROFILE for
    float32, else "PROFILE VALUE" with VALUE the last of the precision's flags ("ort int8",
    "portable fp16"); flags `--profile PROFILE` and then the precision's own, and for a
    precision the table marks `calibrated` `--calibration` `calibration`."""
    cmd = [binary, "support", "--format", "json"]
    text = run(cmd).stdout
    out = {}
    try:
        for p in json.loads(text)["precisions"]:
            flags = [str(f) for f in p["flags"]]
            if p.get("calibrated"):
                flags += ["--calibration", calibration]
            for profile in p["profiles"]:
                label = profile if p["name"] == "float32" or not flags else \
                    f"{profile} {[str(f) for f in p['flags']][-1]}"
                # A clash would silently drop one variant from every table.
                if label in out:
                    raise ValueError(f"two variants labelled {label!r}")
                out[label] = ["--profile", profile] + flags
    except (ValueError, KeyError, TypeError) as e:
        raise RuntimeError(f"{' '.join(map(str, cmd))}: unexpected output ({e})\n{text}") from None
    return out


def with_calibration(flags, path):
    """`flags` calibrating on `path` instead (unchanged when they name no calibration)."""
    return [path if i > 0 and flags[i - 1] == "--calibration" else f for i, f in enumerate(flags)]


def calibrated_quantizations(binary):
    """The `--quantize` values whose exports need `--calibration` (the binary's table)."""
    table = json.loads(run([binary, "support", "--format", "json"]).stdout)
    return {p["flags"][-1] for p in table["precisions"] if p.get("calibrated") and p["flags"]}


def variant_dir(v):
    return v.replace(" ", "-")


# --- interpreters -------------------------------------------------------------------------------


def check_python(py, modules, hint):
    """Raises SetupError unless `py` runs and imports every module."""
    if not (py and os.access(py, os.X_OK)):
        raise SetupError(f"{py} is missing ({hint})")
    code = "import " + ", ".join(modules)
    p = subprocess.run([py, "-c", code], capture_output=True, text=True)
    if p.returncode != 0:
        last = (p.stderr.strip().splitlines() or ["?"])[-1]
        raise SetupError(f"{py} cannot `{code}`: {last} ({hint})")
    return py


def check_modules(modules, hint="./ci/setup.sh makes .venv; run ci/bench.py with .venv/bin/python"):
    """Raises SetupError unless this interpreter imports every module."""
    for m in modules:
        try:
            __import__(m)
        except ImportError as e:
            raise SetupError(f"{sys.executable} cannot import {m}: {e} ({hint})") from None


TORCH_HINT = "bash fixtures/setup.sh makes fixtures/.venv; --torch-python PATH for another"


def torch_python(path, required=True):
    """The reference interpreter (torch, transformers), or None when not required and absent."""
    try:
        return check_python(path, ["torch", "transformers"], TORCH_HINT)
    except SetupError:
        if required:
            raise
        return None


# --- ONNX Runtime and accuracy ------------------------------------------------------------------


def session(path, threads=2, profile_prefix=None):
    """The one session configuration: CPU provider, graph optimisation ALL, N intra-op threads."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if profile_prefix:
        so.enable_profiling = True
        so.profile_file_prefix = profile_prefix
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def log_softmax(x):
    import numpy as np

    x = x.astype(np.float64)
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def kl(ref, ours):
    """Mean over positions of KL(softmax(ref) || softmax(ours)), in nats."""
    import numpy as np

    p, q = log_softmax(ref), log_softmax(ours)
    return float((np.exp(p) * (p - q)).sum(-1).mean())


def cosine(a, b):
    import numpy as np

    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def accuracy(ours, ref):
    """{max_abs, cosine, argmax, kl} of `ours` against `ref` (argmax agreement over the last
    axis, KL of the next-token distributions)."""
    import numpy as np

    return {"max_abs": float(np.abs(ours.astype(np.float64) - ref).max()),
            "cosine": cosine(ours, ref),
            "argmax": float((ours.argmax(-1) == ref.argmax(-1)).mean()),
            "kl": kl(ref, ours)}


def load_safetensors(path):
    """{name: numpy array} of a safetensors file (8-byte header length, JSON header, data)."""
    import numpy as np

    dtypes = {"F32": np.float32, "F64": np.float64, "F16": np.float16, "I64": np.int64,
              "I32": np.int32, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        out[name] = np.frombuffer(data[a:b], dtype=dtypes[t["dtype"]]).reshape(t["shape"])
    return out


# --- output -------------------------------------------------------------------------------------


def f2(x):
    return f"{x:.2f}"


def mb(kb):
    return round(kb / 1024)


def table(headers, rows):
    """Prints a text table: columns right-aligned except the first."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for r in cells:
        say("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))


def write_json(path, obj):
    """Writes obj as JSON to path (`-`: stdout)."""
    if not path:
        return
    text = json.dumps(obj, indent=2) + "\n"
    if path == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)
