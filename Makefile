# enosprov developer commands. Every target creates .venv itself.
PYTHON ?= python3
VENV   ?= .venv
ifeq ($(OS),Windows_NT)
BIN := $(VENV)/Scripts
else
BIN := $(VENV)/bin
endif
DEMO := demo-out

.PHONY: demo test bench torture lint docs clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $@

demo: $(VENV)/.installed
	@rm -rf $(DEMO)
	$(BIN)/enosprov --store $(DEMO)/store.db masterdata create --file examples/masterdata.toml
	$(BIN)/enosprov --store $(DEMO)/store.db group create --id meters-eu --name "Smart meters EU" \
		--product-key demoPK01 --region eu2 --org o15000000000001 --masterdata meters \
		--timezone +01:00
	$(BIN)/enosprov --store $(DEMO)/store.db register --csv examples/devices.csv --group meters-eu \
		--batch-tag B-2026-11-A --results $(DEMO)/results.csv
	@echo "--- re-running the same file is idempotent:"
	$(BIN)/enosprov --store $(DEMO)/store.db register --csv examples/devices.csv --group meters-eu \
		--batch-tag B-2026-11-A
	$(BIN)/enosprov --store $(DEMO)/store.db devices list --group meters-eu --limit 10
	@echo "--- burn credential files for the batch (JSON and ESP32 NVS images), then check them:"
	$(BIN)/enosprov --store $(DEMO)/store.db burn export --group meters-eu --batch-tag B-2026-11-A \
		--burn-format json --out $(DEMO)/burn --dps-url http://127.0.0.1:8080
	$(BIN)/enosprov --store $(DEMO)/store.db burn export --group meters-eu --batch-tag B-2026-11-A \
		--burn-format nvs --out $(DEMO)/burn-nvs --dps-url http://127.0.0.1:8080
	$(BIN)/enosprov --store $(DEMO)/store.db burn verify $(DEMO)/burn/MTR-2026-000001.json \
		$(DEMO)/burn-nvs/MTR-2026-000001.nvs.bin
	@echo "--- the first device powers on: bootstrap from its burned NVS image"
	$(BIN)/enosprov --store $(DEMO)/store.db device bootstrap $(DEMO)/burn-nvs/MTR-2026-000001.nvs.bin
	$(BIN)/enosprov --store $(DEMO)/store.db devices show MTR-2026-000001
	@echo "--- QR labels: an A4 label sheet (PDF), a Zebra ZPL file, PNG labels; scan one back"
	$(BIN)/enosprov --store $(DEMO)/store.db qr batch --group meters-eu --batch-tag B-2026-11-A \
		--label-format pdf --label-template a4-3x8-70x37 --out $(DEMO)/labels
	$(BIN)/enosprov --store $(DEMO)/store.db qr batch --group meters-eu --batch-tag B-2026-11-A \
		--label-format zpl --label-template thermal-62mm --out $(DEMO)/labels-zpl
	$(BIN)/enosprov --store $(DEMO)/store.db qr batch --group meters-eu --batch-tag B-2026-11-A \
		--label-format png --out $(DEMO)/labels-png
	$(BIN)/enosprov --store $(DEMO)/store.db qr scan $(DEMO)/labels-png/MTR-2026-000002.png
	@echo "--- the factory line: a station scans three units (one per line), burns NVS images, prints ZPL labels to a file printer"
	printf 'MTR-2026-100001\nMTR-2026-100002,site=Hall 7\nMTR-2026-100003\n' | \
		$(BIN)/enosprov --store $(DEMO)/store.db --station demo-line-1 station --group meters-eu \
		--out $(DEMO)/station --burn-format nvs --set max_capacity=60 --set phase=single \
		--batch-tag B-2026-11-A --dps-url http://127.0.0.1:8080 \
		--printer file:$(DEMO)/station/printer.zpl
	@echo "--- the same units scanned again: nothing is registered or printed twice"
	printf 'MTR-2026-100001\nMTR-2026-100002,site=Hall 7\n' | \
		$(BIN)/enosprov --store $(DEMO)/store.db --station demo-line-1 station --group meters-eu \
		--out $(DEMO)/station --burn-format nvs --set max_capacity=60 --set phase=single \
		--batch-tag B-2026-11-A --dps-url http://127.0.0.1:8080 \
		--printer file:$(DEMO)/station/printer.zpl
	@echo "--- a unit fails in the field: replace it (new serial, key and secret; same details)"
	$(BIN)/enosprov --store $(DEMO)/store.db --station demo-van-1 replace MTR-2026-000001 \
		--new-device-sn MTR-2026-900001 --out $(DEMO)/replacement --dps-url http://127.0.0.1:8080 \
		--label-template thermal-62mm --yes
	$(BIN)/enosprov --store $(DEMO)/store.db device bootstrap $(DEMO)/replacement/MTR-2026-900001.json
	$(BIN)/enosprov --store $(DEMO)/store.db devices history MTR-2026-000001
	@echo "--- a site moves: reprovision a device to another OU; it bootstraps again with the same file"
	$(BIN)/enosprov --store $(DEMO)/store.db device bootstrap $(DEMO)/burn/MTR-2026-000002.json
	$(BIN)/enosprov --store $(DEMO)/store.db reprovision MTR-2026-000002 --region cn5 \
		--org o15000000000002 --yes
	$(BIN)/enosprov --store $(DEMO)/store.db devices show MTR-2026-000002
	$(BIN)/enosprov --store $(DEMO)/store.db device bootstrap $(DEMO)/burn/MTR-2026-000002.json
	$(BIN)/enosprov --store $(DEMO)/store.db devices history MTR-2026-000002
	@echo "--- the audit journal of this demo:"
	$(BIN)/enosprov --store $(DEMO)/store.db log
	$(BIN)/enosprov --store $(DEMO)/store.db info
	@echo "--- batch monitoring: every batch, a report to mail, and the batch in detail"
	$(BIN)/enosprov --store $(DEMO)/store.db batches list
	$(BIN)/enosprov --store $(DEMO)/store.db batches report B-2026-11-A --out $(DEMO)/report.html \
		--csv-out $(DEMO)/report.csv
	$(BIN)/enosprov --store $(DEMO)/store.db batches show B-2026-11-A

test: $(VENV)/.installed
	$(BIN)/python -m pytest

bench: $(VENV)/.installed
	$(BIN)/python benchmarks/run.py

# kill -9, concurrent stations, API faults, hostile input (docs/torture.md); `make test` runs
# the quick mode (tests/test_torture.py)
torture: $(VENV)/.installed
	$(BIN)/python benchmarks/torture.py

lint: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet ruff "mypy>=1.13" types-requests
	$(BIN)/python -m ruff check enosprov tests benchmarks
	$(BIN)/python -m ruff format --check enosprov tests benchmarks
	$(BIN)/python -m mypy

# docs/cli.md, generated from the application's help texts (tests/test_docs.py checks it)
docs: $(VENV)/.installed
	$(BIN)/python -m enosprov.cli.reference docs/cli.md

clean:
	rm -rf $(VENV) $(DEMO) bench-out torture-out *.egg-info
