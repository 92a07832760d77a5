"""The ``magicvideo`` command line."""
from __future__ import annotations

import argparse
import json
import sys

from . import __version__


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def cmd_info(args: argparse.Namespace) -> int:
    from .config import get_preset
    from .info import describe, format_report

    report = describe(get_preset(args.preset), frames=args.frames, resolution=args.resolution)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .config import PRESETS

    parser = argparse.ArgumentParser(prog="magicvideo", description="MagicVideo text-to-video latent diffusion")
    parser.add_argument("--version", action="version", version=f"magicvideo {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    info = sub.add_parser("info", help="parameter counts and FLOPs of a preset (built on the meta device)")
    info.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    info.add_argument("--frames", type=_positive_int, default=16, help="frames per step (default 16)")
    info.add_argument("--resolution", type=_positive_int, default=None,
                      help="video height/width in pixels (default: the preset's, 64 tiny / 256 sd15)")
    info.add_argument("--json", action="store_true", help="print the figures as JSON")
    info.set_defaults(func=cmd_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ValueError as err:
        print(f"magicvideo {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
