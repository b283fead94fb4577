"""jaxgeo.parallel: shared model and training pieces."""
