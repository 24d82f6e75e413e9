# dx7lake — `make demo` runs the pipeline on the embedded default, `make test` runs the tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DX7LAKE_HOME ?= .dx7lake
SOURCE ?=
DEMO_LIMIT ?= 40
PATCHES ?=
PYTEST_ARGS ?=
export DX7LAKE_HOME DEMO_LIMIT

DBT_FILES := $(shell find dbt/models dbt/macros dbt/tests -type f 2>/dev/null) dbt/dbt_project.yml
MANIFEST := dbt/target/manifest.json

N ?= 400
SCALE_SOURCE ?= ../shared/corpus/realworld

.PHONY: help setup demo test lint format airflow serve bench bench-scale bench-workers ml clean
help:
	@echo "make setup   create $(VENV) with every dependency (from the package registries only)"
	@echo "make demo    run the whole DAG (airflow dags test) on music21's Bach chorales; SOURCE=<dir> for yours"
	@echo "             PROFILE=slow90,up12 / BPM=90 / SAMPLE_RATE=16000: render those profiles beside the lake's"
	@echo "make test    run the test suite"
	@echo "make lint    ruff check + format check"
	@echo "make airflow airflow standalone on DX7LAKE_HOME, to trigger the DAG from the UI"
	@echo "make serve   the phrase browser alone on http://127.0.0.1:8765/phrases"
	@echo "make bench   benchmarks, one JSON object per line"
	@echo "make bench-scale N=400  the pipeline on N Lakh-like files made from SCALE_SOURCE, then a 1% rerun"
	@echo "  STAGES=extract,load,dbt,analytics: only those stages (no render), e.g. to time dbt"
	@echo "make bench-workers  render throughput on 1 vs 2 Celery workers (tests/test_celery_workers.py)"
	@echo "make ml      the [ml] extra: torch (CPU) and datasets, for dx7lake.dataset"

setup: $(VENV)/.installed $(MANIFEST)

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) plugins/dx7lake/support.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip uv
	$(BIN)/uv pip install --compile-bytecode --python $(BIN)/python -e '.[dev]'
	touch $@

# Cosmos renders the dbt task group from this manifest (no `dbt ls` at DAG parse time).
$(MANIFEST): $(VENV)/.installed $(DBT_FILES)
	$(BIN)/dx7lake dbt-parse

demo: setup
	$(BIN)/dx7lake demo --home "$(DX7LAKE_HOME)" $(if $(PATCHES),--patches "$(PATCHES)") $(if $(SOURCE),--source "$(SOURCE)") \
		$(if $(PROFILE),--profile "$(PROFILE)") $(if $(BPM),--bpm "$(BPM)") $(if $(SAMPLE_RATE),--sample-rate "$(SAMPLE_RATE)")

# The whole-DAG (e2e) test files each run in a pytest process of their own: dag.test runs
# slow down in a process that has run many before (whole runs took about 6.5, 9, 10.7 and
# 12 minutes each, in that order, in one process), while a fresh process runs one in about
# 4. Exit status 5 (no test selected, e.g. by a -k in PYTEST_ARGS) is not a failure.
E2E_FILES := $(shell grep -l "pytest.mark.e2e" tests/test_*.py)
test: setup
	$(BIN)/python -m pytest -m "not e2e and not workers_bench" $(PYTEST_ARGS)
	for f in $(E2E_FILES); do $(BIN)/python -m pytest -m "e2e and not workers_bench" $$f $(PYTEST_ARGS) || [ $$? -eq 5 ] || exit 1; done

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

airflow: setup
	$(BIN)/dx7lake airflow --home "$(DX7LAKE_HOME)"

serve: setup
	$(BIN)/dx7lake serve --home "$(DX7LAKE_HOME)" --port 8765

bench: setup
	$(BIN)/python -m bench

# two more whole DAG runs on the Celery test's deployment (1 and 2 workers): the render
# throughput ratio, as a JSON line (Debian's redis-server needed, as for that test)
bench-workers: setup
	$(BIN)/python -m pytest tests/test_celery_workers.py -m workers_bench -q -s

bench-scale: setup
	$(BIN)/python -m bench.scale --files $(N) --source "$(SCALE_SOURCE)" $(if $(PATCHES),--patches "$(PATCHES)") $(if $(STAGES),--stages "$(STAGES)")

# the [ml] extra (torch, Hugging Face datasets) for dx7lake.dataset and its tests; pip, so that a
# configured CPU wheel or index of torch is used (uv would resolve torch to the CUDA build)
ml: setup
	$(BIN)/python -m pip install --quiet -e '.[ml]'

clean:
	rm -rf $(DX7LAKE_HOME) dbt/target dbt/logs .pytest_cache

# --- deploy: the docker-compose stack and AWS (Terraform) ---
COMPOSE ?= docker compose
CELERY ?=
WORKERS ?= 2
TF ?= terraform
TF_DIR ?= terraform
CHECKOV_VENV ?= .venv-checkov
# every profile, so that down/logs reach the Celery and local-S3 services too
ALL_PROFILES := COMPOSE_PROFILES=local-s3,celery
comma := ,

.PHONY: env up down logs tf-init tf-plan tf-apply tf-destroy checkov
# the Terraform tests run checkov from its own venv (its pinned deps clash with Airflow's)
test: $(CHECKOV_VENV)/bin/checkov

env:
	$(PYTHON) docker/make_env.py --file .env

.env:
	$(PYTHON) docker/make_env.py --file $@

# make up [CELERY=1 WORKERS=3]: LocalExecutor by default, Redis + Celery workers on request
up: .env
	profiles=$$(sed -n 's/^COMPOSE_PROFILES=//p' .env); \
	$(if $(CELERY),COMPOSE_PROFILES="$${profiles:+$$profiles$(comma)}celery" AIRFLOW_EXECUTOR=CeleryExecutor DX7LAKE_WORKERS=$(WORKERS)) \
	$(COMPOSE) up -d --build $(if $(CELERY),--scale airflow-worker=$(WORKERS))

# make down [VOLUMES=1 to delete the named volumes as well]
down:
	$(ALL_PROFILES) $(COMPOSE) down --remove-orphans $(if $(VOLUMES),--volumes)

logs:
	$(ALL_PROFILES) $(COMPOSE) logs --follow --tail=200

tf-init:
	$(TF) -chdir=$(TF_DIR) init

tf-plan:
	$(TF) -chdir=$(TF_DIR) plan -out=tfplan

tf-apply:
	$(TF) -chdir=$(TF_DIR) apply tfplan

tf-destroy:
	$(TF) -chdir=$(TF_DIR) destroy

$(CHECKOV_VENV)/bin/checkov:
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install --quiet 'checkov>=3.2,<4'

checkov: $(CHECKOV_VENV)/bin/checkov
	$(CHECKOV_VENV)/bin/checkov --directory $(TF_DIR) --framework terraform --skip-download --quiet --compact
	$(CHECKOV_VENV)/bin/checkov --directory docker --framework dockerfile --skip-download --quiet --compact
