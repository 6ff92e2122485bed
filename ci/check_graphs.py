"""Runs the official ONNX checker (full_check: structure + shape inference) over every graph.

Usage: python ci/check_graphs.py [DIR_OR_FILE ...]   (default: graphs/)
Prints one line per graph; exits 1 if any graph fails.
"""
import pathlib
import sys

import onnx


def main(args: list[str]) -> int:
    roots = [pathlib.Path(a) for a in args] or [pathlib.Path("graphs")]
    models = sorted(p for r in roots for p in ([r] if r.is_file() else r.rglob("*.onnx")))
    if not models:
        print("check_graphs: no .onnx files found", file=sys.stderr)
        return 1
    failed = 0
    for m in models:
        try:
            # A path (not a loaded proto) so external data and >2 GiB models are handled.
            onnx.checker.check_model(str(m), full_check=True)
            print(f"ok    {m}")
        except Exception as e:  # noqa: BLE001 - report every failure, then fail once
            failed += 1
            print(f"FAIL  {m}: {str(e).splitlines()[0]}")
    print(f"onnx.checker full_check (onnx {onnx.__version__}): {len(models) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
