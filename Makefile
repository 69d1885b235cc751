# The two set-up commands of the README. Both install what they need on a fresh machine, into
# a virtual environment (.venv), so they also work where the system Python is "externally
# managed" (Debian, Ubuntu). The venv sees system site-packages: what is already installed
# is reused, not downloaded again.
#   make site   install everything and build the site into site/  (make serve: live preview)
#   make test   install everything (incl. Debian's chromium) and run the whole test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.install-stamp

.PHONY: site serve test install browser lint

$(PY):
	$(PYTHON) -m venv --system-site-packages $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

site: install
	$(PY) -m mikb.cli build

serve: install
	$(PY) -m mikb.cli serve

browser: install
	@command -v chromium >/dev/null 2>&1 || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium fonts-dejavu-core; }
	@$(PY) -c "import playwright" 2>/dev/null || $(PIP) install -q playwright

lint: install
	$(PY) -m ruff check .

test: install browser lint
	$(PY) -m mikb.cli check --strict
	# torch on one thread: on two shared cores, two threads made the small models' training
	# steps up to 20x slower, and the trained circuits' quick tests were checked on one.
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PY) -m pytest -q --durations=25
