# dlcourse: two commands for users (`make lab`, `make test`), each doing its own set-up on a fresh machine.
# Set-up: create .venv if missing, install the package with the tested versions in constraints.txt,
# register the "dlcourse" Jupyter kernel inside the venv.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.dlcourse-installed
BROWSER_STAMP := $(VENV)/.dlcourse-browser-installed
# the browser the browser tests drive: Debian's chromium (never one that Playwright downloads)
CHROMIUM ?= $(shell command -v chromium || command -v chromium-browser)
JOBS   ?= 2
# one torch thread per pytest worker: two workers with two threads each on two cores run 3x slower
# notebook folders that exist (pytest with a missing path collects nothing under xdist)
NBDIRS := $(wildcard lectures solutions)

.PHONY: setup lab test test-browser test-unit test-notebooks notebooks assignments clean-venv help

help:
	@echo "make lab        open JupyterLab on the course map (sets up .venv on first use)"
	@echo "make test       run the whole test suite (unit tests, notebooks, pairing, assignments)"
	@echo "make test-browser  the course in JupyterLab in headless Chromium (needs: apt-get install chromium)"
	@echo "make notebooks  re-execute lectures/ and solutions/ and refresh their reference outputs"
	@echo "make assignments regenerate assignments/ from solutions/"

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml constraints.txt | $(PY)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	$(PY) -m dlcourse.notebooks install-kernel > /dev/null
	$(PY) -m dlcourse.notebooks lab-settings
	touch $(STAMP)

setup: $(STAMP)

lab: $(STAMP)
	$(VENV)/bin/dlcourse lab

test: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m pytest -n $(JOBS) --dist loadfile tests $(NBDIRS) --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg

# Playwright's Python package only (its driver ships in the wheel); it drives the system's chromium.
$(BROWSER_STAMP): constraints.txt | $(STAMP)
	$(PY) -m pip install --quiet -c constraints.txt playwright
	touch $(BROWSER_STAMP)

test-browser: $(STAMP) $(BROWSER_STAMP)
	@test -n "$(CHROMIUM)" || { echo "error: chromium not found; install it with: sudo apt-get install chromium" >&2; exit 2; }
	OMP_NUM_THREADS=1 CHROMIUM=$(CHROMIUM) $(PY) -m pytest -p no:cacheprovider tests/browser/course_in_browser.py

notebooks: $(STAMP)
	$(PY) -m dlcourse.notebooks execute lectures solutions

assignments: $(STAMP)
	$(VENV)/bin/dlcourse assign

clean-venv:
	rm -rf $(VENV)
