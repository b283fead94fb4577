"""jaxgeo.agb (see docs/ for the plan of this domain)."""
