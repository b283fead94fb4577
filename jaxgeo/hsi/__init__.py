"""jaxgeo.hsi (see docs/ for the plan of this domain)."""
