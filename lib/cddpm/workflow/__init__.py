"""The machinery around the method: profiles, the steps the notebooks and ``cddpm demo`` share (``steps``),
papermill batches (``batch``), the report, notebook widgets and Colab. Imports the method and ``cddpm.evaluation``;
nothing imports it but the command line."""
