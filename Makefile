# Developer entry points. The README's commands work without make.
.PHONY: run build test bench bench-ml bench-load bench-postgres fuzz lint lint-openapi fmt

run:
	go run ./cmd/adaptflow dev

build:
	go build -o bin/adaptflow ./cmd/adaptflow

test:
	./scripts/test.sh

# Interpreter vs plain workflow on one embedded server (issue 2's ratio), and
# the policy engine's decision latency.
bench:
	go test ./internal/app -run '^$$' -bench DecisionOverhead -benchtime 3x -timeout 30m
	go test ./internal/app -run '^$$' -bench ReviewResume -benchtime 200x -timeout 30m
	go test ./internal/app -run '^$$' -bench BatchStart -benchtime 5x -timeout 30m
	@echo "decision latency as a worker runs it (GOGC=400, see internal/app.WorkerGCPercent) and at Go's default GC target:"
	GOGC=400 go test ./policies -run '^$$' -bench Decide -benchmem -count 3
	GOGC=100 go test ./policies -run '^$$' -bench Decide -benchmem -count 3
	go test ./api -run '^$$' -bench Simulate100k -benchtime 3x -timeout 30m
	go test ./api -run '^$$' -bench ProcessSteps100k -benchtime 3x -timeout 30m
	go test ./api -run '^$$' -bench OverdueCount100k -benchtime 20x -timeout 30m
	go test ./store/sqlite -run '^$$' -bench InstancesByInput -benchtime 20x -timeout 30m
	go test ./ml/classify -run '^$$' -bench Classify -benchtime 20000x -count 3
	go test ./store/sqlite -run '^$$' -bench SignalHistory -benchtime 10x
	go test ./store/sqlite -run '^$$' -bench Admit100k -benchtime 200x
	go test ./store/sqlite -run '^$$' -bench Snapshot300MB -benchtime 3x

# Issue 5's figures on the public data in ../shared/data (any directory of
# the same layout: NAB=DIR, BANKING77=FILE): the NAB score of the anomaly
# detector (three profiles, fixed and best threshold) and its points/s, and
# the embedded classifier's accuracy, selective accuracy, ECE, training
# time and p99 on an 80/20 split, with all examples and with 10 per intent.
NAB ?= ../shared/data/nab
BANKING77 ?= ../shared/data/banking77/train.csv
bench-ml:
	go run ./cmd/adaptflow ml nab --data $(NAB) --out $$(mktemp -d /tmp/adaptflow-nab.XXXXXX) --json
	go run ./cmd/adaptflow ml eval --train $(BANKING77) --split 0.2 --json
	go run ./cmd/adaptflow ml eval --train $(BANKING77) --split 0.2 --per-label 10 --json
	go run ./cmd/adaptflow ml eval --train $(BANKING77) --split 0.2 --splits 3 --json
	go run ./cmd/adaptflow ml eval --train $(BANKING77) --folds 10 --json

# HTTP load against adaptflow dev: starts at 100/s, then instance queries at
# 500/s, each for ADAPTFLOW_LOAD_SECONDS (default 60); p99 and errors.
bench-load:
	go test ./internal/app -run '^$$' -bench APILoad -benchtime 1x -timeout 30m

# Store benchmarks against a real PostgreSQL with pgvector: DATABASE_URL, or
# a throwaway cluster (note: it runs with fsync=off; give a durable server's
# DATABASE_URL for durable figures).
bench-postgres:
	@if [ -n "$$DATABASE_URL" ]; then $(PGBENCH); else \
		scripts/postgres.sh install && d=$$(mktemp -d /tmp/adaptflow-pg.XXXXXX) && url=$$(scripts/postgres.sh start $$d) && \
		export DATABASE_URL=$$url && { $(PGBENCH); }; rc=$$?; scripts/postgres.sh stop $$d; exit $$rc; \
	fi

# Per-request benchmarks 2,000 times each; the KPI read (100,000 instances
# a request) 20 times; a prune of 1.2 million rows twice.
PGBENCH = go test ./store/postgres -run '^$$' -bench 'Append|Explanation|Nearest|Inbox|QueueSummaries' -benchtime 2000x -timeout 60m && \
	go test ./store/postgres -run '^$$' -bench 'ProcessOutcomes|InstanceListing|SignalHistory' -benchtime 20x -timeout 60m && \
	go test ./store/postgres -run '^$$' -bench 'Prune' -benchtime 2x -timeout 60m

# Each fuzz target for FUZZTIME (default 2m; the tests run only their
# seeds): the API's routes with arbitrary bodies and query strings, the
# steps report's scan of saved states, the definition and policy parsers,
# the policy engine. A finding is written
# under the package's testdata/fuzz and fails `go test` until fixed; Go's
# own race at the time limit (no finding) does not fail it (scripts/fuzz.sh).
FUZZTIME ?= 2m
fuzz:
	FUZZTIME=$(FUZZTIME) scripts/fuzz.sh

lint:
	go vet ./...
	go tool -modfile=tools/go.mod golangci-lint run ./...
	go tool -modfile=tools/go.mod workflowcheck ./workflows/...

# The API document against Redocly's recommended rules (needs npm); the tests
# already validate it with kin-openapi.
lint-openapi:
	npx --yes @redocly/cli@latest lint api/openapi.yaml

fmt:
	gofmt -w $$(git ls-files '*.go')
