"""Operating characteristics: simulated trials under scenarios, for every design on the same patients."""
