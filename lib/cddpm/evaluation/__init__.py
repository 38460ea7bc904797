"""How samples are judged: the evaluator, its training, metrics, fidelity (FD, KID) and probes; imports the method,
never ``cddpm.workflow``."""
