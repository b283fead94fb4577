"""jaxgeo.geollm (see docs/ for the plan of this domain)."""
