# Two commands do all the set-up on a fresh machine with Python 3.11:
#   make demo   render, train, sample, evaluate and report on the synthetic i-CLEVR (CPU-sized);
#               make demo DATA=path/to/iclevr EVALUATOR=path/to/checkpoint.pth: the same on the course's files
#   make test   ruff, then the test suite, notebooks included (what .ci/run calls)
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN     = $(VENV)/bin
TORCH  ?= torch==2.14.1 torchvision==0.29.1

.PHONY: demo test install clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e '.[notebooks,dev]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/cddpm demo $(if $(DATA),--data "$(DATA)") $(if $(EVALUATOR),--evaluator "$(EVALUATOR)") $(if $(OUTPUTS),--outputs "$(OUTPUTS)")

test: $(VENV)/.installed
	$(BIN)/ruff check lib tests benchmarks
	rm -rf outputs/smoke  # the smoke profile's notebooks start from scratch
	CDDPM_PROFILE=smoke $(BIN)/python -m pytest -n 2 --durations=10 tests
	CDDPM_PROFILE=smoke $(BIN)/python -m pytest --nbval-lax notebooks  # in order, one kernel each

clean:
	rm -rf $(VENV) data/synthetic-iclevr outputs/runs outputs/papermill outputs/report
