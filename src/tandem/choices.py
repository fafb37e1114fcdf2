"""The named choices a flag offers and a library implements, in one place free of torch: the CLI parser
builds its choices from these, and tandem.flow / tandem.train check against the same tuples."""

DEVICES = ("auto", "cuda", "mps", "cpu")  # or an indexed one such as cuda:1
LR_SCHEDULES = ("cosine", "linear", "constant")
SOLVERS = ("euler", "heun")  # tandem.flow.sample
TIMESTEP_SCHEDULES = ("logit-normal", "uniform")  # tandem.flow.sample_timesteps
