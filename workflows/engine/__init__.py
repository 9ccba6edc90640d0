"""The workflow engine: graphs, actions and the deterministic executor. Pure functions over
dicts: no database, no network (external calls leave a run as delivery requests)."""
