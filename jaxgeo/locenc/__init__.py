"""jaxgeo.locenc (see docs/ for the plan of this domain)."""
