# Developer entry points. The README's commands work without make.
.PHONY: run build test bench lint fmt

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
	@echo "decision latency as a worker runs it (GOGC=400, see internal/app.WorkerGCPercent) and at Go's default GC target:"
	GOGC=400 go test ./policies -run '^$$' -bench Decide -benchmem -count 3
	GOGC=100 go test ./policies -run '^$$' -bench Decide -benchmem -count 3
	go test ./api -run '^$$' -bench Simulate100k -benchtime 3x -timeout 30m

lint:
	go vet ./...
	go tool -modfile=tools/go.mod golangci-lint run ./...
	go tool -modfile=tools/go.mod workflowcheck ./workflows/...

fmt:
	gofmt -w $$(git ls-files '*.go')
