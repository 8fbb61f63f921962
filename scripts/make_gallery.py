"""Draw the plot gallery of the documentation (docs/gallery.md) by running its commands.

    python scripts/make_gallery.py [--out docs/_generated/gallery] [--force]

Runs, in a fresh folder, exactly the commands the gallery page shows: ``lupusbayes fit`` for
KN5601 (CRS model, BLRM, SLEDAI-2K) and for the hypothetical first AXA-NK02 dose group with
KN5601 as co-data, then ``lupusbayes plot`` for each picture. The fits are real MCMC with each
spec's own settings (nutpie, 4 chains x 1000 draws) and a fixed seed, so the pictures are
reproducible; on 2 cores the whole gallery takes about a minute. The PNGs replace the output
folder in one rename (the fits and the cohort file are not kept).

The docs build runs this script (docs/conf.py) before reading the pages. It skips the work
when the output's stamp matches: a hash of this script, the package's source and data, so the
pictures are redrawn whenever anything that could change them changes (``--force`` redraws
anyway).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SEED = "20251108"
AXA_CUT_OFF = "2026-06-20"
STAMP = "stamp.txt"

#: The commands that make the fits, in order (``lupusbayes`` left out).
FITS = [
    ["fit", "kn5601", "--data", "kn5601", "--model", "crs", "--out", "kn5601_crs.nc", "--seed", SEED],
    ["fit", "kn5601", "--data", "kn5601", "--model", "blrm", "--out", "kn5601_blrm.nc", "--seed", SEED],
    ["fit", "kn5601", "--data", "kn5601", "--model", "sledai", "--out", "kn5601_sledai.nc", "--seed", SEED],
    ["data", "example", "axa_patients", "--out", "axa_patients.csv"],
    ["fit", "axa_nk02", "--data", "axa_patients.csv", "--data", "kn5601", "--model", "crs", "--out", "axa_crs.nc",
     "--seed", SEED],
    ["fit", "axa_nk02", "--data", "axa_patients.csv", "--data", "kn5601", "--model", "blrm", "--out", "axa_blrm.nc",
     "--seed", SEED],
    ["fit", "axa_nk02", "--data", "axa_patients.csv", "--data", "kn5601", "--model", "sledai", "--out",
     "axa_sledai.nc", "--seed", SEED],
]
_KN5601_STATE = ["--state", "kn5601", "--efficacy-fit", "kn5601_sledai.nc"]
_AXA_STATE = ["--state", "axa_patients.csv", "--as-of", AXA_CUT_OFF, "--efficacy-fit", "axa_sledai.nc", "--codata",
              "kn5601"]

#: Each picture: its file, and the arguments of ``lupusbayes plot`` before ``--out FILE``.
PLOTS = [
    ("kn5601_dose_crs.png", ["kn5601_crs.nc", "--kind", "dose_crs"]),
    ("kn5601_dlt_intervals.png", ["kn5601_blrm.nc", "--kind", "dlt_intervals"]),
    ("kn5601_prior_posterior.png", ["kn5601_crs.nc", "--kind", "prior_posterior"]),
    ("kn5601_sledai_months.png", ["kn5601_sledai.nc", "--kind", "sledai_months"]),
    ("kn5601_sledai_response.png", ["kn5601_sledai.nc", "--kind", "sledai_response"]),
    ("kn5601_recommendation.png", ["kn5601_blrm.nc", "--kind", "recommendation", *_KN5601_STATE]),
    ("axa_dose_crs.png", ["axa_crs.nc", "--kind", "dose_crs"]),
    ("axa_dlt_intervals.png", ["axa_crs.nc", "--kind", "dlt_intervals"]),
    ("axa_sledai_months.png", ["axa_sledai.nc", "--kind", "sledai_months"]),
    ("axa_recommendation.png", ["axa_blrm.nc", "--kind", "recommendation", *_AXA_STATE]),
    ("axa_transitions.png", ["axa_blrm.nc", "--kind", "transitions", *_AXA_STATE]),
    ("axa_forest_groups.png", ["axa_crs.nc", "--kind", "forest_groups"]),
    ("kn5601_trace.png", ["kn5601_crs.nc", "--kind", "trace"]),
    ("kn5601_rank.png", ["kn5601_sledai.nc", "--kind", "rank"]),
    ("kn5601_posterior.png", ["kn5601_sledai.nc", "--kind", "posterior"]),
    ("kn5601_forest_doses.png", ["kn5601_crs.nc", "--kind", "forest_doses"]),
    ("kn5601_forest_groups.png", ["kn5601_sledai.nc", "--kind", "forest_groups"]),
    ("kn5601_pair.png", ["kn5601_crs.nc", "--kind", "pair"]),
    ("kn5601_energy.png", ["kn5601_sledai.nc", "--kind", "energy"]),
    ("kn5601_prior_predictive.png", ["kn5601_crs.nc", "--kind", "prior_predictive"]),
    ("kn5601_posterior_predictive.png", ["kn5601_sledai.nc", "--kind", "posterior_predictive"]),
    ("kn5601_prior_predictive_pit.png", ["kn5601_blrm.nc", "--kind", "prior_predictive_pit"]),
    ("kn5601_posterior_predictive_pit.png", ["kn5601_crs.nc", "--kind", "posterior_predictive_pit"]),
    ("kn5601_pareto_k.png", ["kn5601_sledai.nc", "--kind", "pareto_k"]),
]


def plot_command(image: str, arguments: list[str]) -> list[str]:
    """The full ``lupusbayes plot`` command of a picture."""
    return ["plot", *arguments, "--out", image]


def _stamp() -> str:
    """Hash of everything the pictures depend on: this script, the package's source and data."""
    digest = hashlib.sha256(Path(__file__).read_bytes())
    package = ROOT / "src" / "lupusbayes"
    for path in sorted(p for p in package.rglob("*") if p.is_file() and p.suffix in {".py", ".csv", ".toml"}):
        digest.update(str(path.relative_to(package)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _run(arguments: list[str]) -> None:
    """Run one ``lupusbayes`` command (its report to a buffer); stop on bad input."""
    from lupusbayes.cli import main

    started = time.perf_counter()
    report, errors = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(report), contextlib.redirect_stderr(errors):
        code = main(arguments)
    print(f"  [{time.perf_counter() - started:5.1f} s] lupusbayes {' '.join(arguments)}", flush=True)
    if code == 3:
        print(f"    warning: the fit FAILED its convergence gate: {errors.getvalue().strip()}", flush=True)
    elif code != 0:
        raise SystemExit(f"make_gallery: 'lupusbayes {' '.join(arguments)}' failed ({code}): {errors.getvalue()}")


def make_gallery(out: Path, *, force: bool = False) -> bool:
    """Draw every picture into ``out``; return False when the stamp says they are current."""
    import matplotlib

    matplotlib.use("Agg")
    from lupusbayes._io import staged_directory

    stamp = _stamp()
    if not force and (out / STAMP).exists() and (out / STAMP).read_text().strip() == stamp \
            and all((out / image).exists() for image, _ in PLOTS):
        print(f"make_gallery: {out} is current (stamp {stamp[:12]})")
        return False
    started = time.perf_counter()
    with staged_directory(out, overwrite=True, mkdir=True) as folder, contextlib.chdir(folder):
        for arguments in FITS:
            _run(arguments)
        for image, arguments in PLOTS:
            _run(plot_command(image, arguments))
        for leftover in [*folder.glob("*.nc"), *folder.glob("*.csv")]:
            leftover.unlink()
        (folder / STAMP).write_text(stamp + "\n")
    print(f"make_gallery: {len(PLOTS)} pictures in {out} ({time.perf_counter() - started:.0f} s)")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "_generated" / "gallery")
    parser.add_argument("--force", action="store_true", help="redraw even when the stamp matches")
    args = parser.parse_args(argv)
    make_gallery(args.out.resolve(), force=args.force)
    return 0


if __name__ == "__main__":
    sys.exit(main())
