"""Options that ``lupusbayes simulate`` and ``lupusbayes calibrate`` share: the designs, a Dask
cluster, a checkpoint folder apart from the output folder. Each is checked when the command line
is read, before any work."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from lupusbayes.errors import LupusBayesError
from lupusbayes.spec import DESIGNS

__all__ = ["DESIGN_ALIASES", "MAX_LOCAL_WORKERS", "designs_argument", "dask_address", "dask_client",
           "check_checkpoint_folder"]

#: Other names a user may give a design on the command line.
DESIGN_ALIASES = {"blrm": "blrm_ewoc"}
#: The most workers of a local Dask cluster (``--dask local:N``).
MAX_LOCAL_WORKERS = 64
_SCHEDULER = re.compile(r"(?:(?:tcp|tls|ws|wss)://)?(?P<host>[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:]+\]):(?P<port>[0-9]{1,5})",
                        re.ASCII)


def designs_argument(text: str) -> tuple[str, ...]:
    """``--designs``'s type: comma-separated design names, each known and named once."""
    names = tuple(DESIGN_ALIASES.get(name.strip(), name.strip()) for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in DESIGNS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"unknown design {', '.join(unknown) or '(none)'}; designs: {', '.join(DESIGNS)}")
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError("name each design once")
    return names


def dask_address(text: str) -> tuple[str, int | str]:
    """``--dask``'s type: ``("local", workers)`` or ``("scheduler", address)``, checked before any work."""
    address = text.strip()
    if address == "local" or address.startswith("local:"):
        count = address.partition(":")[2] or "2"
        if not count.isascii() or not count.isdigit() or not 1 <= int(count) <= MAX_LOCAL_WORKERS:
            raise argparse.ArgumentTypeError(f"local:N needs N workers from 1 to {MAX_LOCAL_WORKERS} (got {text!r})")
        return "local", int(count)
    match = _SCHEDULER.fullmatch(address)
    if not match or not 1 <= int(match["port"]) <= 65535:
        raise argparse.ArgumentTypeError(f"not a scheduler address: {text!r} (write tcp://host:port, e.g. "
                                         "tcp://scheduler:8786, or local[:N] for a local cluster)")
    return "scheduler", address


def dask_client(address: tuple[str, int | str]):
    """A Dask client for a checked ``--dask`` address (a local cluster, or a scheduler's)."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise LupusBayesError("--dask needs dask.distributed: pip install 'lupusbayes[dask]'") from None
    kind, value = address
    if kind == "local":
        cluster = LocalCluster(n_workers=int(value), threads_per_worker=1, processes=True, dashboard_address=None)
        return Client(cluster)
    try:
        return Client(value, timeout="20s")
    except (OSError, TimeoutError) as error:
        raise LupusBayesError(f"--dask {value}: cannot connect to the scheduler ({type(error).__name__}: {error})") from None


def check_checkpoint_folder(checkpoint: str | None, out: Path) -> None:
    """The checkpoint folder must be neither the output folder nor inside it (nor hold it): said before any work."""
    if checkpoint is None:
        return
    kept, written = Path(checkpoint).resolve(), out.resolve()
    if kept == written or written in kept.parents or kept in written.parents:
        raise LupusBayesError(f"--checkpoint {checkpoint} and --out {out}: give two separate folders (the checkpoint "
                              "keeps chunks between runs; the output folder is written once, at the end)")
