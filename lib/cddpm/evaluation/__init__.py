"""How samples are judged: the course's ResNet18 evaluator (``evaluator``), training one (``training``), the
accuracy metrics (``metrics``), FD and KID against ground-truth renders (``fidelity``) and condition probes
(``probes``). Imports the method modules, never ``cddpm.workflow``; the method imports none of it (a judge or a
guide reaches sampling as an object its caller built)."""
