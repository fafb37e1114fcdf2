"""`tandem check`: a behaviour fingerprint of an environment, and the comparison of several."""
