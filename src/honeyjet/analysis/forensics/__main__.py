"""Worker: ``python -m honeyjet.analysis.forensics <path> <outdir> [--limits JSON] [--no-render]``.

Prints the report as one JSON object on stdout and writes the previews to
``<outdir>/preview-<n>.png``. Exit status 0 whenever a report was printed (the report's
``errors`` carry failures), 2 for bad arguments. ``--rlimit=<resource>:<value>`` makes
the worker apply a resource limit to itself first (used when ``prlimit`` is missing).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
from pathlib import Path


def _apply_rlimits(specs: list[str]) -> None:
    for spec in specs:
        kind, _, value = spec.partition(":")
        resource.setrlimit(int(kind), (int(value), int(value)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m honeyjet.analysis.forensics", description="analyse one captured print job")
    parser.add_argument("path")
    parser.add_argument("outdir")
    parser.add_argument("--limits", default="{}", help="JSON object of Limits fields")
    parser.add_argument("--no-render", action="store_true", help="no previews")
    parser.add_argument("--rlimit", action="append", default=[], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    _apply_rlimits(args.rlimit)

    from honeyjet.analysis.forensics import JobReport, Limits, analyze_file

    try:
        limits = Limits.from_dict(json.loads(args.limits))
    except (ValueError, TypeError) as exc:
        print(f"bad --limits: {exc}", file=sys.stderr)
        return 2
    report = analyze_file(args.path, render=not args.no_render, limits=limits)
    outdir = Path(args.outdir)
    written = 0
    for png in report.previews[: limits.max_previews]:
        try:
            (outdir / f"preview-{written}.png").write_bytes(png)
            written += 1
        except OSError as exc:
            report.add_error(f"preview: {type(exc).__name__}")
            break
    data = report.to_dict()
    data["preview_count"] = written
    sys.stdout.write(json.dumps(data, ensure_ascii=True))
    sys.stdout.flush()
    del JobReport
    return 0


if __name__ == "__main__":
    sys.exit(main())
