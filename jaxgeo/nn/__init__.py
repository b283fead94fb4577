"""jaxgeo.nn: shared model and training pieces."""
