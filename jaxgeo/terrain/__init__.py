"""jaxgeo.terrain (see docs/ for the plan of this domain)."""
