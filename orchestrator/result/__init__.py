"""The run's result as typed models: what result.json holds, and how each measure reads."""
