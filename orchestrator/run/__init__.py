"""The run engine: phases as a table (engine.py), one module per phase."""
