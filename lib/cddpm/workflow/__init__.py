"""The machinery around the method: profiles, notebook steps, papermill batches, the report, widgets and Colab;
nothing imports it but the command line."""
