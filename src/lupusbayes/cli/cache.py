"""``lupusbayes cache``: the fits kept between commands (see :mod:`lupusbayes.fitting.fitcache`)."""

from __future__ import annotations

import argparse

from lupusbayes.cli.commands import COMMANDS
from lupusbayes.cli.output import EXIT_OK, print_json

__all__ = ["add_commands", "add_cache_option", "fit_cache_for"]


def add_cache_option(parser: argparse.ArgumentParser) -> None:
    """``--no-cache``, for the commands that fit (decide, report, simulate)."""
    parser.add_argument("--no-cache", dest="no_cache", action="store_true",
                        help="fit again instead of reading a fit made before with the same data, spec, settings and "
                        "seed (lupusbayes cache list shows the kept fits)")


def fit_cache_for(args: argparse.Namespace):
    """The fit cache a command uses: the user cache folder, or None with ``--no-cache``."""
    from lupusbayes.fitting.fitcache import FitCache

    return None if getattr(args, "no_cache", False) else FitCache()


def _cache(args: argparse.Namespace) -> int:
    from lupusbayes.fitting.fitcache import FitCache

    cache = FitCache()
    if args.action == "clear":
        removed = cache.clear()
        print(f"removed {removed} cached fit(s) from {cache.folder}")
        return EXIT_OK
    entries = cache.entries()
    if args.json:
        print_json({"folder": str(cache.folder), "fits": [
            {"key": e.key, "file": str(e.path), "bytes": e.size_bytes, "created": e.created,
             "description": e.description} for e in entries]})
        return EXIT_OK
    total = sum(e.size_bytes for e in entries)
    print(f"{len(entries)} cached fit(s) in {cache.folder} ({total / 1e6:.1f} MB)")
    for entry in entries:
        print(f"  {entry.created:19s}  {entry.size_bytes / 1e6:6.1f} MB  {entry.key[:12]}  {entry.description}")
    return EXIT_OK


def add_commands(commands) -> None:
    parser = commands.add_parser(
        "cache", help=COMMANDS["cache"][1],
        description="decide, report and simulate keep every fit they make, under a key that hashes the spec, the "
        "data, the model and its settings, the sampling settings, the seed and the lupusbayes version: the same "
        "command again reads the fit instead of refitting (the same numbers, bit for bit). A kept fit is a fit "
        "file, checked like any other when read. The folder: $LUPUSBAYES_CACHE_DIR, else "
        "$XDG_CACHE_HOME/lupusbayes/fits, else ~/.cache/lupusbayes/fits. --no-cache on those commands fits again.",
        epilog="examples:\n  lupusbayes cache list\n  lupusbayes cache clear",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("action", choices=("list", "clear"), help="list the kept fits, or remove them all")
    parser.add_argument("--json", action="store_true", help="machine-readable list")
    parser.set_defaults(handler=_cache)
