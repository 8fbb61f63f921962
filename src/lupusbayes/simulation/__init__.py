"""Operating characteristics: simulated trials under scenarios, for every design on the same patients.

* :mod:`~lupusbayes.simulation.scenarios`: the truths (scenario files);
* :mod:`~lupusbayes.simulation.patients`: latent patients, shared by all designs;
* :mod:`~lupusbayes.simulation.fast`: exact posteriors, batched and cached by counts;
* :mod:`~lupusbayes.simulation.engine`: trials run by the decision module's own rules;
* :mod:`~lupusbayes.simulation.rule_based`: vectorised BOIN and 3+3 (the R packages' ``get.oc``);
* :mod:`~lupusbayes.simulation.metrics`: operating characteristics with Monte Carlo errors;
* :mod:`~lupusbayes.simulation.runner`: chunks, seeds, processes or Dask, checkpoints.
"""

from lupusbayes.errors import SimulationError
from lupusbayes.simulation.engine import PosteriorBank, TrialResults, simulate_trials
from lupusbayes.simulation.metrics import (
    QUANTITIES,
    comparison_table,
    differences_table,
    operating_characteristics,
    paired_differences,
)
from lupusbayes.simulation.patients import LatentPatients, arrival_days, draw_latent_patients
from lupusbayes.simulation.runner import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_DESIGNS,
    CheckpointError,
    Chunk,
    SimulationPlan,
    SimulationResult,
    run_chunk,
    simulate,
)
from lupusbayes.simulation.scenarios import SHIPPED_SCENARIOS, Scenario, ScenarioSet, load_scenarios, parse_scenarios

__all__ = [
    "Scenario", "ScenarioSet", "load_scenarios", "parse_scenarios", "SHIPPED_SCENARIOS",
    "LatentPatients", "draw_latent_patients", "arrival_days",
    "PosteriorBank", "TrialResults", "simulate_trials", "SimulationError",
    "operating_characteristics", "comparison_table", "QUANTITIES", "paired_differences", "differences_table",
    "SimulationPlan", "SimulationResult", "Chunk", "simulate", "run_chunk", "CheckpointError", "DEFAULT_CHUNK_SIZE",
    "DEFAULT_DESIGNS",
]
