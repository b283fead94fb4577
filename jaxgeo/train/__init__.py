"""jaxgeo.train: shared model and training pieces."""
